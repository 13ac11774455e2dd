"""What training and evaluation agree on: the evaluation settings, one record, and the interface the
training loop evaluates through.

`metaslot.train` and `metaslot.eval` do not import each other; both import this module. The settings
of an evaluation are one frozen record, `EvaluationSettings`: the user's choices (`EvalSpec`, the
``--evaluation.*`` flags, saved in ``config.json``) and where the evaluation runs (batch size, device,
precision, process, seed). A new evaluation option is one field of `EvalSpec` (with its flag and its
default), read from ``settings.spec`` where it is used; no signature lists the options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import attrs
import numpy
import torch
from jaxtyping import UInt8

from metaslot import validators
from metaslot.protocols import PROTOCOL_NAMES, ProtocolSettings, resolve_protocol

__all__ = ["EvalSpec", "Evaluation", "EvaluationSettings", "Provenance", "ValidationOutcome"]


@attrs.frozen
class EvalSpec:
    """Evaluation after training and in `cli.eval`: split, batch cap, pictures, averaging."""

    split: str = "val"
    max_batches: int | None = attrs.field(default=None, validator=validators.positive_or_none)
    batch_size: int | None = attrs.field(default=None, validator=validators.positive_or_none)
    """None: the training batch size."""
    pictures: int = attrs.field(default=8, validator=validators.non_negative)
    """Images in the segmentation grid (0: no pictures)."""
    gallery_codes: int = attrs.field(default=12, validator=validators.non_negative)
    gallery_examples: int = attrs.field(default=6, validator=validators.positive)
    average: Literal["image", "batch"] = "image"
    """How metrics are averaged over the split: 'image' (every image weighs the same) or 'batch' (the
    reference's mean of batch means, which over-weights a smaller last batch and depends on the batch
    size; use it with the reference's batch size to reproduce its numbers)."""
    clustering_metrics: bool = False
    """Also report what AdaSlot's evaluation does besides ARI and mBO, on the foreground pixels:
    ``fg_ami``, ``fg_nmi``, ``fg_purity`` (Hungarian) and pair-counting ``fg_pair_precision``,
    ``fg_pair_recall``, ``fg_pair_f1`` (`metaslot.ops.cluster_metrics`; a per-image loop on the host,
    so off by default)."""
    protocol: str = attrs.field(default="metaslot", validator=validators.one_of(*PROTOCOL_NAMES))
    """The published evaluation protocol the metrics follow (`metaslot.protocols`: metaslot, spot,
    dinosaur, adaslot); the five fields below override its settings one by one (None: the protocol's)."""
    mask_size: int | None = attrs.field(default=None, validator=validators.or_none(validators.non_negative))
    """Side of the square masks and ground truth are compared at (0: the data's resolution)."""
    masks: Literal["pipeline", "decoder", "attention"] | None = None
    """Which masks are scored: the pipeline's own, the decoder's, or the aggregator's attention."""
    class_mbo: bool | None = None
    """Report mBO^c where the data carries class labels."""
    token_orders: Literal["first", "all"] | None = None
    """SPOT's decoder: patch order 0, or the mean over all nine."""
    background: Literal["segment", "ignored"] | None = None
    """The ground-truth background as a segment (mBO, mIoU, ARI) or ignored (FG-ARI, mBO over objects)."""

    def protocol_settings(self) -> tuple[ProtocolSettings, list[str]]:
        """The resolved protocol and the names of the settings these flags override."""
        return resolve_protocol(
            self.protocol,
            mask_size=self.mask_size,
            masks=self.masks,
            class_mbo=self.class_mbo,
            token_orders=self.token_orders,
            background=self.background,
        )


@attrs.frozen
class EvaluationSettings:
    """One evaluation's settings, passed whole from the loop or the CLI to `metaslot.eval`."""

    spec: EvalSpec
    """The user's choices; ``spec.batch_size`` is already resolved into ``batch_size``."""
    batch_size: int = attrs.field(validator=validators.positive)
    device: torch.device
    dtype: torch.dtype = torch.float32
    seed: int = 0
    world_size: int = 1
    rank: int = 0
    num_workers: int = 0

    def for_validation(self, max_batches: int | None, pictures: int) -> EvaluationSettings:
        """The same settings with the training's validation cap and picture count."""
        spec = attrs.evolve(self.spec, max_batches=max_batches, pictures=pictures)
        return attrs.evolve(self, spec=spec)


@dataclass(frozen=True)
class Provenance:
    """Which weights a report scores, and on what.

    ``checkpoint`` is ``last`` (the run's final weights), ``best`` (the best validation score) or the
    name of the checkpoint file given; ``split`` the split reported; ``selected_on`` the split the
    ``best`` checkpoint was chosen on (``train-holdout`` or ``val``; None for any other checkpoint).
    A ``best`` chosen on the split being reported has seen its test data: the report says so.
    """

    checkpoint: str
    split: str
    step: int | None = None
    selected_on: str | None = None

    @property
    def selected_on_reported_split(self) -> bool:
        return self.selected_on is not None and self.selected_on == self.split

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "split": self.split,
            "selected_on": self.selected_on,
            "selected_on_reported_split": self.selected_on_reported_split,
        }

    def describe(self) -> str:
        """One line for the printed table."""
        step = f" (step {self.step})" if self.step is not None else ""
        line = f"checkpoint {self.checkpoint}{step}, split {self.split}"
        if self.selected_on is None:
            return line
        if not self.selected_on_reported_split:
            return f"{line}; selected on {self.selected_on}"
        return (
            f"{line}; selected on {self.selected_on}, the split reported here, so this number is optimistic: "
            "report the last checkpoint, or choose the best on --loop.val-split train-holdout"
        )


@runtime_checkable
class ValidationOutcome(Protocol):
    """What a validation gives back: metric means and, when pictures were asked for, the segmentation
    grid of the first images as RGB pixels (logged to TensorBoard / W&B)."""

    @property
    def metrics(self) -> dict[str, float]: ...

    @property
    def picture(self) -> UInt8[numpy.ndarray, "h w 3"] | None: ...


@runtime_checkable
class Evaluation(Protocol):
    """What the training loop needs from the evaluation (`metaslot.eval.SplitEvaluation` is the standard one)."""

    def validate(
        self, pipeline: torch.nn.Module, dataset: torch.utils.data.Dataset, settings: EvaluationSettings
    ) -> ValidationOutcome:
        """Metric means over ``dataset`` (its first ``settings.spec.max_batches`` batches per process), and
        on rank 0 the segmentation grid of its first ``settings.spec.pictures`` images; collective."""
        ...

    def report(
        self,
        pipeline: torch.nn.Module,
        dataset: torch.utils.data.Dataset,
        settings: EvaluationSettings,
        *,
        output_dir: Path,
        title: str,
        provenance: Provenance,
    ) -> dict[str, float]:
        """`validate`, then (rank 0) the metrics JSON, the printed table and pictures in ``output_dir``;
        both say which weights were scored on which split (``provenance``)."""
        ...

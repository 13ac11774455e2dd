"""What the training loop and the evaluation need from a pipeline and its aggregator, as protocols.

Every pipeline of `metaslot.models.pipelines` satisfies `Pipeline`; a plug-in pipeline does so by having
these members, whatever its base class. The protocols are runtime-checkable so the shape checker can
verify arguments; callers use the members, never ``hasattr`` probes.

Declare ``aggregator`` (and an aggregator's ``codebook_size``) on the class, as a property or a class
attribute. From Python 3.12 ``isinstance`` against a protocol looks members up statically
(`inspect.getattr_static`), and that does not see the submodules an ``nn.Module`` keeps in ``_modules``:
a pipeline that only assigns ``self.aggregator = MetaSlot(...)`` in ``__init__`` fails the check there
(with ``METASLOT_TYPECHECK=1``). A property over the registered submodule keeps its state-dict names::

    @property
    def aggregator(self) -> MetaSlot:
        return self._modules["aggregator"]
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from jaxtyping import Float
from torch import Tensor

from metaslot.models.records import AggregatorOutput, CodebookStatistics, PipelineOutput


@runtime_checkable
class Aggregator(Protocol):
    """Slot Attention or MetaSlot: features in, `AggregatorOutput` out, upkeep after each optimiser step."""

    @property
    def codebook_size(self) -> int | None:
        """m, the number of prototypes; None for an aggregator without a codebook (plain Slot Attention)."""
        ...

    def update_codebook(self, output: AggregatorOutput) -> None:
        """Codebook upkeep after the optimiser step (a no-op without a codebook)."""
        ...


@runtime_checkable
class Pipeline(Protocol):
    """A trainable pipeline: ``pipeline(image b 3 h w) -> PipelineOutput`` (loss, named terms, masks and
    keep for slot pipelines, an optional reconstruction), its aggregator (None for the VQ-VAE), and the
    hook the training loop calls after every optimiser step. It is also an ``nn.Module``."""

    @property
    def aggregator(self) -> Aggregator | None: ...

    def __call__(self, image: Float[Tensor, "b 3 h w"]) -> PipelineOutput: ...

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        """Upkeep that follows the optimiser step (MetaSlot's codebook); the output is that step's."""
        ...

    def codebook_statistics(self) -> CodebookStatistics | None:
        """Codes in use and perplexity of the aggregator's codebook (None without one), for the log."""
        ...


@runtime_checkable
class SamplesReconstructions(Protocol):
    """A generative pipeline (SLATE, SlotDiffusion) that redraws images from their slots for pictures."""

    @property
    def renders(self) -> bool:
        """False when the pipeline lacks what drawing needs (a stage-1 decoder it was loaded without)."""
        ...

    def reconstruct(self, image: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b 3 h2 w2"]:
        """ImageNet-normalised images at the stage-1 VQ-VAE's resolution, sampled from the slots."""
        ...


@runtime_checkable
class DecodesInOrders(Protocol):
    """A pipeline whose decoder reads the tokens in patch orders (SPOT): evaluation decodes order 0 or
    the mean of all nine, as the evaluation protocol says."""

    def decoding_orders(self, orders: str) -> AbstractContextManager[None]:
        """Within the context, evaluation decodes ``orders`` ('first' or 'all')."""
        ...


def codebook_size_of(pipeline: Pipeline) -> int | None:
    """m of the pipeline's aggregator codebook, or None (Slot Attention, the VQ-VAE)."""
    aggregator = pipeline.aggregator
    return None if aggregator is None else aggregator.codebook_size

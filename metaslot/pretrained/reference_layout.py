"""The reference's checkpoint layout (``torch.save(ModelWrap.state_dict())``, keys ``m.*``) and ours.

Every tensor of a reference file has one place in our pipeline, found by name (a table of prefix
renames per pipeline family) and checked by shape. The few entries that are not plain tensors of
ours are converted on purpose:

- DINOSAUR's position embedding is ``(1, n, d)`` there and ``(1, 1, n, d)`` here;
- MetaSlot's ``clust_prob`` (the prune-path probability, 1.0 in every saved file) becomes the step
  count at which our ``prune_probability(step)`` reaches it; ``vq.alpha`` must be 0 (the reference
  never changes it); ``vq.idx_buffer`` (written, never read) and SLATE's causal ``mask`` (a constant
  our decoder builds itself) are dropped; the ring buffer counts as full (the reference's starts full
  of filler);
- MetaSlot's upkeep state that the file cannot hold starts fresh: usage counters at 0 (every code dead
  until used, as the reference's counters restart at 1), the one-off k-means marked done (the codebook
  is trained; the reference never overwrote a trained codebook either).

The reverse, :func:`to_reference_layout`, writes our pipeline in the reference's layout (the tests'
round trip, and anyone handing our weights to the reference code).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metaslot.errors import CheckpointMismatchError
from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.pipelines import DinosaurSpec, SlateSpec, SlotDiffusionSpec
from metaslot.models.pipelines.vqvae import VQVAESpec

PREFIX = "m."
"""The reference wraps its model as ``ModelWrap.m``."""

Renames = tuple[tuple[str, str], ...]
"""(reference prefix or key, our prefix or key) pairs; the longest matching prefix wins."""

_FRONT_END: Renames = (
    ("m.encode_backbone.1.", "frontend.encoder.backbone."),
    ("m.encode_project.", "frontend.projection.mlp."),
    ("m.initializ.mean", "frontend.aggregator.initializer.mean"),
    ("m.initializ.logstd", "frontend.aggregator.initializer.log_std"),
    ("m.aggregat.norm1q.", "frontend.aggregator.norm_queries."),
    ("m.aggregat.proj_q.", "frontend.aggregator.project_queries."),
    ("m.aggregat.norm1kv.", "frontend.aggregator.norm_features."),
    ("m.aggregat.proj_k.", "frontend.aggregator.project_keys."),
    ("m.aggregat.proj_v.", "frontend.aggregator.project_values."),
    ("m.aggregat.rnn.", "frontend.aggregator.gru."),
    ("m.aggregat.norm2.", "frontend.aggregator.norm_mlp."),
    ("m.aggregat.vq.codebook.templat.weight", "frontend.aggregator.codebook_state.codebook"),
    ("m.aggregat.vq.latent_buffer", "frontend.aggregator.codebook_state.buffer_vectors"),
    ("m.aggregat.vq.buffer_ptr", "frontend.aggregator.codebook_state.buffer_pointer"),
)
_STAGE_ONE_ENCODER: Renames = (
    ("m.mediat.encode.1.", "vqvae.encoder.layers."),
    ("m.mediat.encode.2.", "vqvae.encoder.norm."),
    ("m.mediat.encode.3.", "vqvae.encoder.to_code."),
    ("m.mediat.codebook.templat.weight", "vqvae.codebook.embedding.weight"),
)
DINOSAUR: Renames = (
    *_FRONT_END,
    ("m.decode.posit_embed.pe", "decoder.position"),
    ("m.decode.backbone.", "decoder.mlp."),
)
SLATE: Renames = (
    *_FRONT_END,
    *_STAGE_ONE_ENCODER,
    ("m.decode.bos", "decoder.bos"),
    ("m.decode.posit_embed.pe", "decoder.positions"),
    ("m.decode.norm0.", "decoder.input_norm."),
    ("m.decode.backbone.layers.", "decoder.layers."),
    ("m.decode.readout.", "decoder.readout."),
)
SLOTDIFFUSION: Renames = (*_FRONT_END, *_STAGE_ONE_ENCODER, ("m.decode.backbone.", "decoder.unet."))
VQVAE: Renames = (
    ("m.encode.1.", "encoder.layers."),
    ("m.encode.2.", "encoder.norm."),
    ("m.encode.3.", "encoder.to_code."),
    ("m.decode.0.", "decoder.from_code."),
    ("m.decode.1.", "decoder.norm."),
    ("m.decode.2.", "decoder.layers."),
    ("m.codebook.templat.weight", "codebook.embedding.weight"),
)

CLUSTER_PROBABILITY = "m.aggregat.clust_prob"
VQ_ALPHA = "m.aggregat.vq.alpha"
DROPPED = ("m.aggregat.vq.idx_buffer", "m.decode.mask")
"""Reference entries nothing reads back (the code ring's indices; SLATE's constant causal mask)."""
CODEBOOK_STATE = "frontend.aggregator.codebook_state."
FRESH = tuple(
    CODEBOOK_STATE + name
    for name in ("usage_counters", "buffer_fill", "step_counter", "kmeans_done", "images_seen", "path_seed")
)
"""Our MetaSlot upkeep state that a reference file does not hold: set by :func:`fresh_upkeep_state`."""
POSITION_4D = "decoder.position"


def _aggregator_mlp(aggregator: MetaSlotSpec | SlotAttentionSpec) -> Renames:
    """The aggregator MLP's two linear layers. The reference's ``MLP`` inserts a ``Dropout`` after the
    activation when its dropout is non-zero, which moves the second layer from ``ffn.2`` to ``ffn.3``
    (the Slot Attention baselines train with 0.01); ours keeps ``mlp.2`` either way."""
    second = 3 if aggregator.mlp_dropout > 0 else 2
    return (
        ("m.aggregat.ffn.0.", "frontend.aggregator.mlp.0."),
        (f"m.aggregat.ffn.{second}.", "frontend.aggregator.mlp.2."),
    )


def renames_for(model_spec: object) -> Renames:
    """The rename table of a pipeline spec's family (with its aggregator's MLP layout)."""
    if isinstance(model_spec, VQVAESpec):
        return VQVAE
    if isinstance(model_spec, DinosaurSpec):
        family = DINOSAUR
    elif isinstance(model_spec, SlateSpec):
        family = SLATE
    elif isinstance(model_spec, SlotDiffusionSpec):
        family = SLOTDIFFUSION
    else:
        raise CheckpointMismatchError(
            f"no reference checkpoint layout is known for {type(model_spec).__name__}: reference files load "
            "into dinosaur, slate, slotdiffusion and vqvae presets"
        )
    return (*family, *_aggregator_mlp(model_spec.aggregator))


def _rename(key: str, renames: Renames, reverse: bool = False) -> str | None:
    best: tuple[str, str] | None = None
    for reference, ours in renames:
        source, target = (ours, reference) if reverse else (reference, ours)
        exact = key == source
        if (exact or (source.endswith(".") and key.startswith(source))) and (
            best is None or len(source) > len(best[0])
        ):
            best = (source, target)
    if best is None:
        return None
    return best[1] + key[len(best[0]) :]


def our_key(reference_key: str, renames: Renames) -> str | None:
    """Where a reference entry goes in our pipeline (None: no place)."""
    return _rename(reference_key, renames)


def reference_key(key: str, renames: Renames) -> str | None:
    """The reference entry our ``key`` is saved as (None: the reference has none)."""
    return _rename(key, renames, reverse=True)


@dataclass(frozen=True)
class Mapped:
    """A reference state in our names: ``tensors`` to load, ``cluster_probability`` when the file has one."""

    tensors: dict[str, Tensor]
    cluster_probability: float | None


def _shape_for(ours: Tensor, theirs: Tensor, key: str) -> Tensor | None:
    if theirs.shape == ours.shape:
        return theirs
    if key.endswith(POSITION_4D) and theirs.dim() == 3 and ours.shape == (1, *theirs.shape):
        return theirs.reshape(ours.shape)
    return None


def map_reference_state(
    tensors: Mapping[str, Tensor],
    own: Mapping[str, Tensor],
    renames: Renames,
    *,
    optional: tuple[str, ...] = (),
    origin: str,
    hint: str = "",
) -> Mapped:
    """Rename every entry of a reference state to our keys and check it against ``own`` (our state dict).

    Unexpected entries, missing keys (ours that are neither fresh nor ``optional`` prefixes) and shape
    disagreements are one :class:`CheckpointMismatchError` naming up to five keys of each and ``hint``.
    """
    mapped: dict[str, Tensor] = {}
    unexpected: list[str] = []
    misshaped: list[str] = []
    probability: float | None = None
    for key, tensor in tensors.items():
        if key == CLUSTER_PROBABILITY and CODEBOOK_STATE + "step_counter" in own:
            probability = _scalar(tensor)
            if probability is not None and not 0 < probability <= 1:
                misshaped.append(f"{key} = {probability} (a probability in (0, 1])")
            continue
        if key == VQ_ALPHA and CODEBOOK_STATE + "codebook" in own:
            alpha = _scalar(tensor)
            if alpha is not None and alpha != 0.0:
                misshaped.append(
                    f"{key} = {alpha} (the reference always holds 0; a blend of slots and codes is not "
                    "implemented here)"
                )
            continue
        if key in DROPPED and (key != "m.decode.mask" or "decoder.bos" in own):
            continue
        name = our_key(key, renames)
        if name is None or name not in own:
            unexpected.append(key)
            continue
        shaped = _shape_for(own[name], tensor, name)
        if shaped is None:
            misshaped.append(f"{key} {tuple(tensor.shape)} vs {tuple(own[name].shape)}")
            continue
        mapped[name] = shaped.to(own[name].dtype) if shaped.dtype != own[name].dtype else shaped
    held = set(mapped) | set(FRESH)
    missing = [key for key in own if key not in held and not (optional and key.startswith(optional))]
    problems = []
    if missing:
        problems.append(
            f"missing {len(missing)} ({_some(reference_key(key, renames) or key for key in missing)})"
        )
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} ({_some(unexpected)})")
    if misshaped:
        problems.append(f"of another shape {len(misshaped)} ({_some(misshaped)})")
    if problems:
        raise CheckpointMismatchError(f"{origin} does not fit the pipeline: keys {'; '.join(problems)}{hint}")
    return Mapped(tensors=mapped, cluster_probability=probability)


def _scalar(tensor: Tensor) -> float | None:
    """The value of a one-element tensor (NaN for any other; None on the ``meta`` device: no values)."""
    if tensor.is_meta:
        return None
    return float(tensor.float().reshape(-1)[0]) if tensor.numel() == 1 else math.nan


def _some(items: object) -> str:
    listed = list(items)  # type: ignore[call-overload]
    return ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else "")


def steps_for_probability(probability: float, start: float, growth: float) -> int:
    """The first step at which ``start · growth^step`` (capped at 1) reaches ``probability``."""
    if probability <= start or growth <= 1.0:
        return 0
    return math.ceil(math.log(min(probability, 1.0) / start) / math.log(growth) - 1e-9)


@torch.no_grad()
def fresh_upkeep_state(pipeline: nn.Module, spec: MetaSlotSpec, cluster_probability: float | None) -> None:
    """MetaSlot's upkeep state after loading a reference file (see the module docstring)."""
    state = pipeline.get_submodule(CODEBOOK_STATE.rstrip("."))
    capacity = spec.buffer_capacity
    state.usage_counters.zero_()
    state.buffer_fill.fill_(capacity)
    state.images_seen.fill_(capacity)
    state.kmeans_done.fill_(True)
    probability = 1.0 if cluster_probability is None else cluster_probability
    state.step_counter.fill_(steps_for_probability(probability, spec.prune_start, spec.prune_growth))
    # The host-side mirrors follow the buffers (as after a state-dict load).
    state._images_seen_host = int(state.images_seen)
    state._kmeans_done_host = True


def to_reference_layout(pipeline: nn.Module, model_spec: object) -> dict[str, Tensor]:
    """Our pipeline's state in the reference's layout (what its ``torch.save`` would have written).

    Stage-two pipelines lose their VQ decoder (the reference's files hold none); MetaSlot's state is
    written as the reference keeps it (``clust_prob`` from our step counter, ``alpha`` 0, zero codes).
    """
    renames = renames_for(model_spec)
    state = pipeline.state_dict()
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if key in FRESH:
            continue
        name = reference_key(key, renames)
        if name is None:
            if key.startswith("vqvae.decoder."):
                continue
            raise CheckpointMismatchError(f"{key} has no place in the reference's layout")
        out[name] = tensor.reshape(tensor.shape[1:]) if key == POSITION_4D else tensor
    aggregator = None if isinstance(model_spec, VQVAESpec) else model_spec.aggregator
    if isinstance(aggregator, MetaSlotSpec):
        step = int(state[CODEBOOK_STATE + "step_counter"])
        out[CLUSTER_PROBABILITY] = torch.tensor(
            min(1.0, aggregator.prune_start * aggregator.prune_growth**step), dtype=torch.float32
        )
        out[VQ_ALPHA] = torch.tensor(0.0)
        out["m.aggregat.vq.idx_buffer"] = torch.zeros(aggregator.buffer_capacity, dtype=torch.long)
    if isinstance(model_spec, SlateSpec):
        side = int(state["decoder.positions"].shape[1])
        out["m.decode.mask"] = torch.triu(torch.ones(side, side, dtype=torch.bool), 1)
    return out

"""SPOT (Kakogeorgiou et al., CVPR 2024) with MetaSlot or Slot Attention: frozen DINOv2 features →
projection → aggregator → autoregressive decoder reconstructing the features in one of nine patch
orders; masks from the decoder's last cross-attention (``spec/spot.md``).

Stage 1 is the MetaSlot reference's ``spot_r-coco.py``: DINOv2 ViT-S/14 with 4 registers (registers
dropped, no final norm), MLP projection 384→384→384, shared Gaussian initialiser, the nine-order
decoder, MSE to the detached features. Stage 2 (self-training, SPOT's ``train_spot_2.py``) adds a
frozen stage-1 ``teacher`` whose decoder masks teach the student's slot attention through
`metaslot.ops.self_training`, learnt per-slot queries, bi-level truncation, and the last
``trainable_blocks`` ViT blocks trained, with a frozen copy of the encoder giving the target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import attrs
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.nn import functional

from metaslot.errors import ConfigError
from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders.permuted_autoregressive import (
    EvalOrders,
    PermutedARDecoderSpec,
    orders_for,
    random_order,
)
from metaslot.models.encoders import DinoViTSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import attention_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import (
    SlotMasks,
    SlotPipeline,
    evaluation_attention_masks,
    require_image_size,
)
from metaslot.models.records import PipelineOutput
from metaslot.ops.self_training import self_training_cross_entropy
from metaslot.validators import at_least_one, holds, non_negative

SPOT_VIT = "vit_small_patch14_reg4_dinov2.lvd142m"


def spot_encoder() -> DinoViTSpec:
    """DINOv2 ViT-S/14 with 4 registers at 224 (256 × 0.875), the last block's tokens without the norm."""
    return DinoViTSpec(model_name=SPOT_VIT, final_norm=False)


def spot_projection() -> ProjectionSpec:
    """The reference's ``MLP(384, [384, 384], ln="pre")``."""
    return ProjectionSpec(hidden_multiplier=1)


def _default_aggregator() -> AggregatorSpec:
    return MetaSlotSpec(num_slots=7, slot_dim=256, feature_dim=384, initializer="shared", buffer_capacity=896)


def _open_vit_for_trainable_blocks(spec: SpotSpec) -> None:
    """Stage 2 fine-tunes the last ViT blocks: only a ViT built unfrozen has blocks to train."""
    if spec.trainable_blocks and (not isinstance(spec.encoder, DinoViTSpec) or spec.encoder.frozen):
        raise ConfigError(
            f"trainable_blocks={spec.trainable_blocks} needs a ViT encoder with frozen=False "
            "(--model.encoder.frozen False)"
        )


def _teacher_is_stage_one(spec: SpotSpec) -> None:
    """SPOT distils one level deep: the teacher is a stage-1 model."""
    if spec.teacher is not None and spec.teacher.teacher is not None:
        raise ConfigError("the SPOT teacher must be a stage-1 model (its spec has a teacher of its own)")


@attrs.frozen(kw_only=True)
class SpotSpec:
    """SPOT stage 1 (``teacher`` None) or stage 2 (a teacher spec; its weights come from ``--teacher``)."""

    encoder: EncoderSpec = attrs.field(factory=spot_encoder)
    projection: ProjectionSpec | None = attrs.field(factory=spot_projection)
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: PermutedARDecoderSpec = attrs.field(factory=PermutedARDecoderSpec)
    image_size: int = attrs.field(default=256, validator=at_least_one)
    """Side of the square input images (the masks are made at this size)."""
    trainable_blocks: int = attrs.field(
        default=0, validator=[non_negative, holds(_open_vit_for_trainable_blocks)]
    )
    """Stage 2: train the last this many ViT blocks (SPOT: 4 of 12); a frozen copy of the encoder gives
    the reconstruction target. Needs a ViT encoder built with ``frozen=False``."""
    teacher: SpotSpec | None = attrs.field(default=None, validator=holds(_teacher_is_stage_one))
    """Stage 2: the frozen stage-1 model whose decoder masks the student learns (from its config.json)."""
    teacher_weight: float = attrs.field(default=5e-3, validator=non_negative)
    """Weight of the self-training cross-entropy (SPOT's ``--ce_weight``)."""

    def build(self) -> Spot:
        return Spot(self)


class Spot(SlotPipeline):
    """``forward(image b 3 h w) -> PipelineOutput``: MSE of the decoder to the features (+ the stage-2
    self-training term), masks from the decoder's last cross-attention."""

    def __init__(self, spec: SpotSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator)
        self.spec = spec
        encoder = self.frontend.encoder
        self.decoder = spec.decoder.build(
            encoder.grid_size(spec.image_size, spec.image_size),
            feature_dim=encoder.out_channels,
            slot_dim=spec.aggregator.slot_dim,
        )
        self.target_encoder = self._target_encoder(spec) if spec.trainable_blocks else None
        self.teacher = spec.teacher.build() if spec.teacher is not None else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
            self.teacher.eval()
        self._evaluation_orders: EvalOrders = "first"

    def _target_encoder(self, spec: SpotSpec) -> nn.Module:
        """Freeze all of the ViT but its last ``trainable_blocks`` blocks; a frozen copy gives the target."""
        assert isinstance(spec.encoder, DinoViTSpec)  # checked by SpotSpec
        backbone = self.frontend.encoder.backbone
        depth = len(backbone.blocks)
        if spec.trainable_blocks > depth:
            raise ConfigError(f"trainable_blocks ({spec.trainable_blocks}) exceeds the ViT's {depth} blocks")
        backbone.requires_grad_(False)
        for block in backbone.blocks[depth - spec.trainable_blocks :]:
            block.requires_grad_(True)
        # Random weights here (no second read of the weight file); the copy follows the encoder's.
        target = attrs.evolve(spec.encoder, frozen=True, pretrained=False, weights=None).build()
        target.load_state_dict(self.frontend.encoder.state_dict())
        return target

    def train(self, mode: bool = True) -> Spot:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the frozen stage-1 model always runs as at evaluation
        return self

    def orders(self, generator: torch.Generator | None) -> list[int]:
        """The patch orders this forward decodes: the spec's training choice, or at evaluation order 0
        unless `decoding_orders` says 'all'."""
        if self.training:
            return self.decoder.training_orders(generator)
        return orders_for(self._evaluation_orders)

    @contextlib.contextmanager
    def decoding_orders(self, orders: str) -> Iterator[None]:
        """Within the context, evaluation decodes ``orders``: 'first' (order 0) or 'all' (the mean of nine);
        the evaluation protocol's ``token_orders`` (`metaslot.models.interfaces.DecodesInOrders`)."""
        if orders not in ("first", "all"):
            raise ConfigError(f"unknown token orders {orders!r}: choose 'first' or 'all'")
        previous, self._evaluation_orders = self._evaluation_orders, orders  # type: ignore[assignment]
        try:
            yield
        finally:
            self._evaluation_orders = previous

    def targets(self, image: Float[Tensor, "b 3 h w"], features: Float[Tensor, "b n c"]) -> Tensor:
        """What the decoder reconstructs: the detached encoder tokens, or the frozen copy's in stage 2."""
        if self.target_encoder is None:
            return features.detach()
        with torch.no_grad():
            return self.target_encoder(image)

    def slot_masks(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> SlotMasks:
        """Front end and decoder; masks from the decoder's cross-attention at the input size."""
        masked, _ = self._decode(image, generator)
        return masked

    def _decode(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None
    ) -> tuple[SlotMasks, Tensor]:
        size = self.spec.image_size
        require_image_size(image, size, "SPOT", "SpotSpec")
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        keep = self.downstream_keep(aggregated)
        target = self.targets(image, front.features)
        decoded = self.decoder(target, self.decoder_slots(aggregated), keep, self.orders(generator))
        masks = attention_to_masks(decoded.attention, front.grid, (size, size), keep)
        return SlotMasks(front=front, masks=masks, reconstruction=decoded.reconstruction), target

    @torch.no_grad()
    def teacher_labels(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> Int[Tensor, "b n"]:
        """The teacher's hard masks on the token grid: argmax over slots of its decoder attention, decoded
        in one random order (SPOT's ``--teacher_eval_permutations random``)."""
        assert self.teacher is not None
        teacher = self.teacher
        front = teacher.frontend(image, generator=generator)
        keep = teacher.downstream_keep(front.aggregator)
        order = [random_order(generator)]
        decoded = teacher.decoder(teacher.targets(image, front.features), front.aggregator.slots, keep, order)
        return decoded.attention.argmax(dim=1)

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        masked, target = self._decode(image, generator)
        aggregated = masked.front.aggregator
        reconstruction = functional.mse_loss(masked.reconstruction.float(), target.float())
        terms = {"reconstruction": reconstruction.detach()}
        loss = reconstruction
        for name, value in aggregated.loss_terms.items():  # AdaSlot's sparsity
            terms[name] = value.detach()
            loss = loss + value
        if self.teacher is not None and self.training:
            labels = self.teacher_labels(image, generator)
            if labels.shape[1] != aggregated.attention.shape[2]:
                raise ConfigError(
                    f"the teacher's token grid ({labels.shape[1]} tokens) differs from the student's "
                    f"({aggregated.attention.shape[2]}): train both with the same encoder and image size"
                )
            keep = aggregated.keep if self.honour_keep_downstream else None
            cross_entropy = self_training_cross_entropy(aggregated.attention, labels, keep)
            weighted = self.spec.teacher_weight * cross_entropy
            terms["self_training"] = weighted.detach()
            loss = loss + weighted
        return PipelineOutput(
            loss=loss,
            terms=terms,
            slots=aggregated.slots,
            keep=aggregated.keep,
            masks=masked.masks,
            reconstruction=masked.reconstruction,
            aggregator=aggregated,
            honour_keep_downstream=self.honour_keep_downstream,
            attention_masks=evaluation_attention_masks(
                self, masked.front, (self.image_size, self.image_size)
            ),
        )

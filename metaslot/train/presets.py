"""Presets: plain functions ``<model>_<data>() -> TrainConfig``, picked by ``--model`` × ``--data``
through the explicit registry `PRESETS` (so ``--help`` lists them and each has a static caller).

The paper configs (``spec/reference.md`` §2) for VOC, COCO and ClevrTex: DINOv2 ViT-S/14 at 224
(16×16 tokens), 256×256 input, slots 6/7/11, slot width 256, MetaSlot codebook 512 with a ring buffer
of 4·batch·slots, batch 32, 50k steps, Adam 2e-4, 5 % linear warm-up then cosine to 0, L2 clip 1.0,
validation every steps/40 on 256 training images held out of training (``--loop.val-split
train-holdout``; the published "val" split is the paper's test split). VQ-VAE stage 1: 30k steps, batch 64, Adam 2e-3,
from TAESD with encoder layers 0..10 frozen, LPIPS for c4 (`reference_vqvae`). The shapes presets are
small CPU-sized variants; ``autoencoder_shapes`` is the default main job (``python -m cli.train``).
MOVi-D has no MetaSlot config in the reference; its presets reuse the COCO settings with 11 slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import attrs

from metaslot.errors import ConfigError
from metaslot.eval_settings import EvalSpec
from metaslot.train.config import LoopSpec, OptimSpec, ScheduleSpec, TrainConfig

MODELS = ("autoencoder", "dinosaur", "vqvae", "slate", "slotdiffusion", "spot")
DATASETS = ("shapes", "voc", "coco", "clevrtex", "movi_d")
AGGREGATORS = ("metaslot", "slot-attention", "adaslot")
VQVAE_VARIANTS = ("c256", "c4")

PAPER_SLOTS = {"voc": 6, "coco": 7, "clevrtex": 11, "movi_d": 11, "shapes": 7}
DATA_ROOT = Path("data")


def data_spec(name: str) -> object:
    """The dataset spec a preset uses for ``name`` (published layout under ``data/``; override --data.root)."""
    if name == "shapes":
        from metaslot.data.shapes import ShapesSpec

        return ShapesSpec(resolution=64)
    if name == "movi_d":
        from metaslot.data.video import MoviDSpec

        return MoviDSpec(root=DATA_ROOT)
    from metaslot.data.published import ClevrTexSpec, COCOSpec, VOCSpec

    specs = {"voc": VOCSpec, "coco": COCOSpec, "clevrtex": ClevrTexSpec}
    return specs[name](root=DATA_ROOT)


def _metaslot(num_slots: int, width: int, batch_size: int, codebook_size: int = 512):
    from metaslot.models.aggregators import MetaSlotSpec

    # Reference ring buffer: 4 · batch · slots (768 / 896 / 1408 for VOC / COCO / ClevrTex).
    return MetaSlotSpec(
        num_slots=num_slots,
        slot_dim=width,
        feature_dim=width,
        codebook_size=codebook_size,
        buffer_capacity=4 * batch_size * num_slots,
    )


PAPER_HOLDOUT_IMAGES = 256
"""Training images set aside for validation and the ``best`` checkpoint on the real datasets: the published
"val" split of VOC, COCO and ClevrTex is the paper's test split, the one reported (``--loop.val-split val``
validates there and trains on every training image, as the reference did)."""
PAPER_HOLDOUT_CLIPS = 16
"""MOVi-D: clips held out (24 frames each, 384 frames)."""


def _paper_loop(steps: int, batch_size: int, best_metric: str = "fg_ari", best_mode: str = "max") -> LoopSpec:
    every = max(steps // 40, 1)  # reference val_interval = total_step // 40
    return LoopSpec(
        steps=steps,
        batch_size=batch_size,
        val_every=every,
        val_split="train-holdout",
        val_holdout=PAPER_HOLDOUT_IMAGES,
        checkpoint_every=every,
        best_metric=best_metric,
        best_mode=best_mode,  # type: ignore[arg-type]
    )


def _paper_ocl(model: object, data: str, name: str) -> TrainConfig:
    """Common part of the DINOSAUR/SLATE/SlotDiffusion paper configs."""
    return TrainConfig(
        name=name,
        model=model,
        data=data_spec(data),
        optim=OptimSpec(learning_rate=2e-4, clip_norm=1.0, clip_norm_type="l2"),
        schedule=ScheduleSpec(warmup_fraction=0.05, final_learning_rate=0.0),
        loop=_paper_loop(50_000, 32),
    )


def _dinosaur(data: str) -> TrainConfig:
    from metaslot.models.pipelines import DinosaurSpec

    model = DinosaurSpec(aggregator=_metaslot(PAPER_SLOTS[data], 256, 32), image_size=256)
    return _paper_ocl(model, data, f"dinosaur-{data}")


def _slate(data: str) -> TrainConfig:
    from metaslot.models.encoders import DinoViTSpec
    from metaslot.models.pipelines.slate import SlateSpec
    from metaslot.models.pipelines.vqvae import vqvae_c256

    model = SlateSpec(
        encoder=DinoViTSpec(), aggregator=_metaslot(PAPER_SLOTS[data], 256, 32), vqvae=vqvae_c256()
    )
    return _paper_ocl(model, data, f"slate-{data}")


def _slotdiffusion(data: str) -> TrainConfig:
    try:
        from metaslot.models.pipelines.slotdiffusion import SlotDiffusionSpec
    except ImportError as error:
        raise ConfigError(
            f"the slotdiffusion pipeline is not available in this installation ({error})"
        ) from error
    from metaslot.models.encoders import DinoViTSpec
    from metaslot.models.pipelines.vqvae import vqvae_c4

    model = SlotDiffusionSpec(
        encoder=DinoViTSpec(), aggregator=_metaslot(PAPER_SLOTS[data], 256, 32), vqvae=vqvae_c4()
    )
    return _paper_ocl(model, data, f"slotdiffusion-{data}")


def _vqvae(data: str, variant: str = "c256") -> TrainConfig:
    from metaslot.models.pipelines.vqvae import reference_vqvae

    # Reference vqvae-*-c256/c4: 30k steps, batch 64, Adam 2e-3, 5 % warm-up, cosine to 0, L2 clip 1.0;
    # TAESD start with encoder layers 0..10 frozen, losses in ImageNet units, LPIPS for c4
    # (--model.pretrained None / --model.lpips-weight 0 train without them).
    model = reference_vqvae("c4" if variant == "c4" else "c256")
    return TrainConfig(
        name=f"vqvae-{variant}-{data}",
        model=model,
        data=data_spec(data),
        optim=OptimSpec(learning_rate=2e-3, clip_norm=1.0),
        schedule=ScheduleSpec(warmup_fraction=0.05),
        loop=_paper_loop(30_000, 64, best_metric="loss", best_mode="min"),
        evaluation=EvalSpec(gallery_codes=0),
    )


def _autoencoder(data: str, resolution: int = 128) -> TrainConfig:
    """The original Slot Attention autoencoder at 128×128 on a real dataset (no frozen backbone needed)."""
    from metaslot.models.pipelines import AutoencoderSpec

    model = AutoencoderSpec(aggregator=_metaslot(PAPER_SLOTS[data], 64, 32), image_size=resolution)
    data_config = attrs.evolve(data_spec(data), resolution=resolution)
    return TrainConfig(
        name=f"autoencoder-{data}",
        model=model,
        data=data_config,
        optim=OptimSpec(learning_rate=4e-4),
        loop=_paper_loop(100_000, 32),
    )


def _spot(data: str) -> TrainConfig:
    """SPOT stage 1 as the MetaSlot reference's ``spot_r-coco.py`` (``spec/spot.md``): DINOv2 ViT-S/14
    with 4 registers (no final norm), MLP 384→384→384, shared Gaussian initialiser, MetaSlot (kv 384,
    slots 256, codebook 512), the nine-order decoder (d 384, 4 blocks, 4 heads); 100k steps of batch 32,
    Adam 2e-4 with 5k warm-up steps then cosine to 2e-7, clipping at 0.3 on the L∞ norm, fp16 with a
    gradient scaler on a GPU. Evaluation decodes order 0 (``--evaluation.token-orders all``: the mean of nine)."""
    from metaslot.models.pipelines.spot import SpotSpec

    slots = PAPER_SLOTS[data]
    aggregator = attrs.evolve(_metaslot(slots, 256, 32), feature_dim=384, initializer="shared")
    return TrainConfig(
        name=f"spot-{data}",
        model=SpotSpec(aggregator=aggregator, image_size=256),
        data=data_spec(data),
        optim=OptimSpec(learning_rate=2e-4, clip_norm=0.3, clip_norm_type="inf"),
        schedule=ScheduleSpec(warmup_fraction=0.05, final_learning_rate=2e-7),
        loop=_paper_loop(100_000, 32),
        precision="auto-fp16",
    )


# --- the 30 presets ------------------------------------------------------------------------------


def prune_growth_reaching_one_at(step: int, start: float = 0.02) -> float:
    """The growth g with start·g^step = 1: short runs must reach the always-prune regime of evaluation too
    (the reference's 1.001 gets there after ~3.9k steps, well inside its 50k)."""
    return math.exp(-math.log(start) / step)


def autoencoder_shapes() -> TrainConfig:
    """The CPU main job: a few minutes on 2 cores, then evaluation and pictures.

    Built to show object discovery within minutes, not copied from a paper (docs/results.md has what was
    tried). The encoder sees each pixel on its own (1×1 convs over colour, then the position embedding), so
    the slots group pixels by colour and place; the attention-colour decoder paints every slot in one
    colour through its attention mask, so the reconstruction loss reaches the grouping directly and one
    slot cannot paint two differently coloured shapes. Seven slots for at most four shapes plus the
    background leave MetaSlot duplicates to prune; a small codebook with k-means updates and a dead-code
    timeout of 1 024 slot vectors (73 steps) stays alive from the first hundred steps without recycling
    idle codes so often that they split the background's prototype. The prune path becomes certain at step
    500 (a sixth of the run): trained mostly on the path evaluation takes, MetaSlot keeps fewer surplus
    slots than when it becomes certain at two thirds of the run (docs/results.md).
    """
    from metaslot.data.shapes import ShapesSpec
    from metaslot.models.decoders import AttentionColourDecoderSpec
    from metaslot.models.encoders import CNNEncoderSpec
    from metaslot.models.pipelines import AutoencoderSpec

    resolution, batch_size, slots, width, steps = 32, 16, 7, 32, 3_000
    aggregator = attrs.evolve(
        _metaslot(slots, width, batch_size, codebook_size=32),
        codebook_update="both",
        dead_code_timeout=1_024,
        prune_growth=round(prune_growth_reaching_one_at(steps // 6), 5),
    )
    model = AutoencoderSpec(
        encoder=CNNEncoderSpec(channels=(width, width, width, width), kernel_size=1, strides=(1, 1, 1, 1)),
        aggregator=aggregator,
        decoder=AttentionColourDecoderSpec(),
        image_size=resolution,
    )
    data = ShapesSpec(
        resolution=resolution,
        min_objects=1,
        max_objects=4,
        size_range=(0.15, 0.3),
        train_size=5_000,
        val_size=256,
    )
    return TrainConfig(
        name="autoencoder-shapes",
        model=model,
        data=data,
        optim=OptimSpec(learning_rate=1e-3, clip_norm=1.0),
        schedule=ScheduleSpec(warmup_fraction=0.05),
        loop=LoopSpec(
            steps=steps,
            batch_size=batch_size,
            val_every=1_000,
            val_batches=4,
            checkpoint_every=500,
            log_every=25,
            num_workers=0,
        ),
        evaluation=EvalSpec(pictures=8),
        device="auto",
    )


def _small_shapes(
    model: object, name: str, best_metric: str = "fg_ari", best_mode: str = "max"
) -> TrainConfig:
    from metaslot.data.shapes import ShapesSpec

    return TrainConfig(
        name=name,
        model=model,
        data=ShapesSpec(resolution=128),
        optim=OptimSpec(learning_rate=4e-4),
        loop=LoopSpec(
            steps=5_000,
            batch_size=32,
            val_every=500,
            checkpoint_every=500,
            best_metric=best_metric,
            best_mode=best_mode,
        ),  # type: ignore[arg-type]
    )


def dinosaur_shapes() -> TrainConfig:
    from metaslot.models.encoders import DinoViTSpec
    from metaslot.models.pipelines import DinosaurSpec

    model = DinosaurSpec(
        encoder=DinoViTSpec(image_size=112), aggregator=_metaslot(7, 128, 32), image_size=128
    )
    return _small_shapes(model, "dinosaur-shapes")


def vqvae_shapes(variant: str = "c256") -> TrainConfig:
    from metaslot.models.pipelines.vqvae import vqvae_c4, vqvae_c256

    model = (vqvae_c4 if variant == "c4" else vqvae_c256)(codebook_size=512)
    config = _small_shapes(model, f"vqvae-{variant}-shapes", best_metric="loss", best_mode="min")
    return attrs.evolve(config, optim=OptimSpec(learning_rate=2e-3), evaluation=EvalSpec(gallery_codes=0))


def slate_shapes() -> TrainConfig:
    config = _slate("voc")
    model = attrs.evolve(
        config.model,
        encoder=attrs.evolve(config.model.encoder, image_size=112),
        aggregator=_metaslot(7, 128, 32),
        vqvae=attrs.evolve(config.model.vqvae, codebook_size=512),
        image_size=128,
    )
    return _small_shapes(model, "slate-shapes")


def slotdiffusion_shapes() -> TrainConfig:
    config = _slotdiffusion("voc")
    model = attrs.evolve(
        config.model,
        encoder=attrs.evolve(config.model.encoder, image_size=112),
        aggregator=_metaslot(7, 128, 32),
        vqvae=attrs.evolve(config.model.vqvae, codebook_size=512),
        image_size=128,
    )
    return _small_shapes(model, "slotdiffusion-shapes")


SPOT_TRAINABLE_BLOCKS = 4
"""SPOT's stage 2 trains the ViT's blocks 8-11 (``train_spot_2.py``: ``blocks >= 8`` of 12)."""


def spot_stage_two(config: TrainConfig, teacher: Path) -> TrainConfig:
    """SPOT's self-training stage (``train_spot_2.py``) on top of a stage-1 SPOT preset: the student gets
    learnt per-slot queries (AdaSlot keeps its shared initialiser), bi-level truncation (Slot Attention;
    MetaSlot's stage 1 runs without a graph already), its last 4 ViT blocks trained with a frozen copy
    giving the target, and the cross-entropy to the masks of ``teacher`` (weight 5e-3); same schedule.
    ``teacher``: the stage-1 run folder or one of its checkpoints; its spec is read from its
    ``config.json`` when the run starts (`metaslot.train.stages.attach_teacher`), so this parses offline."""
    from metaslot.models.aggregators import AdaSlotSpec, SlotAttentionSpec
    from metaslot.models.pipelines.spot import SpotSpec

    if not isinstance(config.model, SpotSpec) or config.model.teacher is not None:
        raise ConfigError("--teacher applies to --model spot (a stage-1 SPOT preset)")
    aggregator = config.model.aggregator
    if not isinstance(aggregator, AdaSlotSpec):
        aggregator = attrs.evolve(aggregator, initializer="learnt")
    if isinstance(aggregator, SlotAttentionSpec):
        aggregator = attrs.evolve(aggregator, bilevel=True)
    model = attrs.evolve(
        config.model,
        encoder=attrs.evolve(config.model.encoder, frozen=False),
        aggregator=aggregator,
        trainable_blocks=SPOT_TRAINABLE_BLOCKS,
    )
    return attrs.evolve(config, model=model, name=f"{config.name}-stage2", teacher=Path(teacher))


def spot_shapes() -> TrainConfig:
    """SPOT stage 1 on 128×128 shapes: the ViT at 112 (8×8 tokens), slots of width 128."""
    config = _spot("voc")
    model = attrs.evolve(
        config.model,
        encoder=attrs.evolve(config.model.encoder, image_size=112),
        aggregator=attrs.evolve(_metaslot(7, 128, 32), feature_dim=384, initializer="shared"),
        image_size=128,
    )
    small = _small_shapes(model, "spot-shapes")
    return attrs.evolve(small, optim=config.optim, precision=config.precision)


def _video_evaluation(config: TrainConfig) -> TrainConfig:
    """Evaluate MOVi-D 4 clips (96 frames) at a time: a training-sized batch of clips is 24× the images;
    hold out clips rather than images for validation."""
    return attrs.evolve(
        config,
        evaluation=attrs.evolve(config.evaluation, batch_size=4),
        loop=attrs.evolve(config.loop, val_holdout=PAPER_HOLDOUT_CLIPS),
    )


def autoencoder_voc() -> TrainConfig:
    return _autoencoder("voc")


def autoencoder_coco() -> TrainConfig:
    return _autoencoder("coco")


def autoencoder_clevrtex() -> TrainConfig:
    return _autoencoder("clevrtex")


def autoencoder_movi_d() -> TrainConfig:
    return _video_evaluation(_autoencoder("movi_d"))


def dinosaur_voc() -> TrainConfig:
    return _dinosaur("voc")


def dinosaur_coco() -> TrainConfig:
    return _dinosaur("coco")


def dinosaur_clevrtex() -> TrainConfig:
    return _dinosaur("clevrtex")


def dinosaur_movi_d() -> TrainConfig:
    return _video_evaluation(_dinosaur("movi_d"))


def vqvae_voc(variant: str = "c256") -> TrainConfig:
    return _vqvae("voc", variant)


def vqvae_coco(variant: str = "c256") -> TrainConfig:
    return _vqvae("coco", variant)


def vqvae_clevrtex(variant: str = "c256") -> TrainConfig:
    return _vqvae("clevrtex", variant)


def vqvae_movi_d(variant: str = "c256") -> TrainConfig:
    return _video_evaluation(_vqvae("movi_d", variant))


def slate_voc() -> TrainConfig:
    return _slate("voc")


def slate_coco() -> TrainConfig:
    return _slate("coco")


def slate_clevrtex() -> TrainConfig:
    return _slate("clevrtex")


def slate_movi_d() -> TrainConfig:
    return _video_evaluation(_slate("movi_d"))


def slotdiffusion_voc() -> TrainConfig:
    return _slotdiffusion("voc")


def slotdiffusion_coco() -> TrainConfig:
    return _slotdiffusion("coco")


def slotdiffusion_clevrtex() -> TrainConfig:
    return _slotdiffusion("clevrtex")


def slotdiffusion_movi_d() -> TrainConfig:
    return _video_evaluation(_slotdiffusion("movi_d"))


def spot_voc() -> TrainConfig:
    return _spot("voc")


def spot_coco() -> TrainConfig:
    return _spot("coco")


def spot_clevrtex() -> TrainConfig:
    return _spot("clevrtex")


def spot_movi_d() -> TrainConfig:
    return _video_evaluation(_spot("movi_d"))


# --- FT-DINOSAUR (Didolkar et al. 2024): the published models' architecture ----------------------
# Selected with --model ftdinosaur-<size>-<resolution> --data coco: --aggregator slot-attention is the
# published model (the weights `metaslot.load("ftdinosaur:<size>-<resolution>")` fetches); the default
# --aggregator metaslot puts MetaSlot in its place (same widths, slots and MLPs). The architecture is the
# public loader's (rw-ocrl/ftdinosaur-inference); the training settings beyond the step counts of the
# file names (300k at 224, then 10k more at 518) are this project's paper settings, not the paper's.

FTDINOSAUR_BACKBONES = {
    "small": "vit_small_patch14_dinov2.lvd142m",
    "base": "vit_base_patch14_dinov2.lvd142m",
}
FTDINOSAUR_MODELS = (
    "ftdinosaur-small-224",
    "ftdinosaur-small-518",
    "ftdinosaur-base-224",
    "ftdinosaur-base-518",
)
FTDINOSAUR_POSITION_SIZE = 518
"""DINOv2's native resolution: its position embedding is kept at 37×37 and resampled at every forward."""


def _ftdinosaur_aggregator(aggregator: str, batch_size: int) -> object:
    from metaslot.models.aggregators import SlotAttentionSpec

    # FT-DINOSAUR's Slot Attention (OCLF): one shared learned Gaussian, sampled at evaluation too, eps
    # 1e-8, a ReLU residual MLP of width 4·256, 3 iterations, no BO-QSA, no dropout.
    fields = dict(mlp_activation="relu", epsilon=1e-8, initializer="shared")
    if aggregator == "slot-attention":
        return SlotAttentionSpec(num_slots=7, slot_dim=256, feature_dim=256, **fields)
    return attrs.evolve(_metaslot(7, 256, batch_size), **fields)


def _ftdinosaur(size: str, resolution: int, aggregator: str) -> TrainConfig:
    """FT-DINOSAUR: a trainable DINOv2 ViT-{S,B}/14 at ``resolution`` (its position embedding kept at 518,
    no final norm), a ReLU projection to 256, 7 slots, a ReLU 3×2048 MLP decoder with top-3 decoding,
    reconstructing the frozen original DINOv2's features."""
    from metaslot.models.decoders import MLPDecoderSpec
    from metaslot.models.encoders import DinoViTSpec, ProjectionSpec
    from metaslot.models.pipelines import DinosaurSpec

    batch_size = 32
    backbone = DinoViTSpec(
        model_name=FTDINOSAUR_BACKBONES[size],
        image_size=resolution,
        position_size=FTDINOSAUR_POSITION_SIZE,
        final_norm=False,
        frozen=False,
    )
    model = DinosaurSpec(
        encoder=backbone,
        projection=ProjectionSpec(hidden_multiplier=2, activation="relu"),
        aggregator=_ftdinosaur_aggregator(aggregator, batch_size),
        decoder=MLPDecoderSpec(
            hidden_channels=(2048, 2048, 2048), activation="relu", top_k=3, position_std=0.02
        ),
        image_size=resolution,
        target_encoder=attrs.evolve(backbone, frozen=True),
    )
    steps = 300_000 if resolution == 224 else 10_000
    suffix = "" if aggregator == "metaslot" else "-sa"
    config = _paper_ocl(model, "coco", f"ftdinosaur-{size}-{resolution}-coco{suffix}")
    # The images come at the model's resolution (the published models read 224 or 518 squares).
    data = attrs.evolve(config.data, resolution=resolution)
    return attrs.evolve(config, data=data, loop=_paper_loop(steps, batch_size))


def ftdinosaur_small_224_coco(aggregator: str = "metaslot") -> TrainConfig:
    return _ftdinosaur("small", 224, aggregator)


def ftdinosaur_small_518_coco(aggregator: str = "metaslot") -> TrainConfig:
    return _ftdinosaur("small", 518, aggregator)


def ftdinosaur_base_224_coco(aggregator: str = "metaslot") -> TrainConfig:
    return _ftdinosaur("base", 224, aggregator)


def ftdinosaur_base_518_coco(aggregator: str = "metaslot") -> TrainConfig:
    return _ftdinosaur("base", 518, aggregator)


FTDINOSAUR_PRESETS: dict[tuple[str, str], Callable[[str], TrainConfig]] = {
    ("ftdinosaur-small-224", "coco"): ftdinosaur_small_224_coco,
    ("ftdinosaur-small-518", "coco"): ftdinosaur_small_518_coco,
    ("ftdinosaur-base-224", "coco"): ftdinosaur_base_224_coco,
    ("ftdinosaur-base-518", "coco"): ftdinosaur_base_518_coco,
}
"""FT-DINOSAUR's presets, apart from `PRESETS` (which holds every --model × --data of the paper grid):
its weights were published for COCO only. Each takes the --aggregator."""


# --- the registry: (--model, --data) → preset ---------------------------------------------------

PRESETS: dict[tuple[str, str], Callable[..., TrainConfig]] = {
    ("autoencoder", "shapes"): autoencoder_shapes,
    ("autoencoder", "voc"): autoencoder_voc,
    ("autoencoder", "coco"): autoencoder_coco,
    ("autoencoder", "clevrtex"): autoencoder_clevrtex,
    ("autoencoder", "movi_d"): autoencoder_movi_d,
    ("dinosaur", "shapes"): dinosaur_shapes,
    ("dinosaur", "voc"): dinosaur_voc,
    ("dinosaur", "coco"): dinosaur_coco,
    ("dinosaur", "clevrtex"): dinosaur_clevrtex,
    ("dinosaur", "movi_d"): dinosaur_movi_d,
    ("vqvae", "shapes"): vqvae_shapes,  # the vqvae presets take the --vqvae-variant
    ("vqvae", "voc"): vqvae_voc,
    ("vqvae", "coco"): vqvae_coco,
    ("vqvae", "clevrtex"): vqvae_clevrtex,
    ("vqvae", "movi_d"): vqvae_movi_d,
    ("slate", "shapes"): slate_shapes,
    ("slate", "voc"): slate_voc,
    ("slate", "coco"): slate_coco,
    ("slate", "clevrtex"): slate_clevrtex,
    ("slate", "movi_d"): slate_movi_d,
    ("slotdiffusion", "shapes"): slotdiffusion_shapes,
    ("slotdiffusion", "voc"): slotdiffusion_voc,
    ("slotdiffusion", "coco"): slotdiffusion_coco,
    ("slotdiffusion", "clevrtex"): slotdiffusion_clevrtex,
    ("slotdiffusion", "movi_d"): slotdiffusion_movi_d,
    ("spot", "shapes"): spot_shapes,
    ("spot", "voc"): spot_voc,
    ("spot", "coco"): spot_coco,
    ("spot", "clevrtex"): spot_clevrtex,
    ("spot", "movi_d"): spot_movi_d,
}


# --- selection -----------------------------------------------------------------------------------


def _is_paper_ocl(config: TrainConfig) -> bool:
    """DINOSAUR, SLATE or SlotDiffusion on a paper dataset (VOC, COCO, ClevrTex; MOVi-D reuses them)."""
    from metaslot.data.shapes import ShapesSpec
    from metaslot.models.pipelines import AutoencoderSpec

    return not isinstance(config.model, AutoencoderSpec) and not isinstance(config.data, ShapesSpec)


def with_slot_attention(config: TrainConfig) -> TrainConfig:
    """The same preset with plain Slot Attention in place of MetaSlot (same widths, slots, iterations).

    On the paper presets this is Table 1's baseline, the parent framework's (VQ-VFM-OCL) DINOSAUR /
    SLATE / SlotDiffusion configs: bi-level truncated backprop (BO-QSA), MLP dropout 0.01, and the
    learning rate decaying to lr/1000 instead of 0 (``spec/reference.md`` §2). Other presets keep their
    settings and only swap the aggregator.
    """
    from metaslot.models.aggregators import MetaSlotSpec, slot_attention_like

    aggregator = getattr(config.model, "aggregator", None)
    if not isinstance(aggregator, MetaSlotSpec):
        raise ConfigError(
            f"--aggregator slot-attention does not apply to {type(config.model).__name__} (it has no aggregator)"
        )
    baseline = slot_attention_like(aggregator)
    schedule = config.schedule
    if _is_paper_ocl(config):
        baseline = attrs.evolve(baseline, bilevel=True, mlp_dropout=0.01)
        schedule = attrs.evolve(schedule, final_learning_rate=config.optim.learning_rate / 1000)
    model = attrs.evolve(config.model, aggregator=baseline)
    return attrs.evolve(config, model=model, schedule=schedule, name=f"{config.name}-sa")


# --- AdaSlot (issue 25) ---------------------------------------------------------------------------

ADASLOT_SLOTS = {"coco": 33}
"""K_max of the released AdaSlot configs where our presets differ: COCO 33 (stage 1 ran with 7, which
the shared initialiser allows). ClevrTex keeps 11 (the released CLEVR10 value); VOC, MOVi-D and shapes
keep the preset's count."""


def with_adaslot(config: TrainConfig) -> TrainConfig:
    """The same preset with AdaSlot in place of MetaSlot: the preset's widths, iterations and schedule,
    AdaSlot's released selection (shared initialiser, tau 1, no lower bound, sampling at evaluation,
    ``mask_normalized``), and λ as released: 0.1 for the feature-reconstruction and generative
    pipelines, the CLEVR10 weight in our units for the pixel autoencoder (`pixel_sparsity_weight`).

    This is AdaSlot's second stage: start it from a fixed-K run with ``--init-from RUN`` (a Slot
    Attention run with ``--model.aggregator.initializer shared``; docs/training.md, "AdaSlot").
    """
    from metaslot.models.aggregators import MetaSlotSpec, adaslot_like, pixel_sparsity_weight
    from metaslot.models.pipelines import AutoencoderSpec
    from metaslot.train.stages import data_selector

    aggregator = getattr(config.model, "aggregator", None)
    if not isinstance(aggregator, MetaSlotSpec):
        raise ConfigError(
            f"--aggregator adaslot does not apply to {type(config.model).__name__} (it has no aggregator)"
        )
    pixel = isinstance(config.model, AutoencoderSpec)
    slots = ADASLOT_SLOTS.get(data_selector(config.data), aggregator.num_slots)
    adaslot = adaslot_like(
        aggregator,
        num_slots=slots,
        sparsity_weight=round(pixel_sparsity_weight(), 6) if pixel else 0.1,
    )
    model = attrs.evolve(config.model, aggregator=adaslot)
    return attrs.evolve(config, model=model, name=f"{config.name}-adaslot")


def _choose(kind: str, value: str, choices: tuple[str, ...]) -> str:
    normalised = value.replace("-", "_") if kind == "data" else value
    if normalised not in choices:
        raise ConfigError(f"unknown --{kind} {value!r}: choose one of {', '.join(choices)}")
    return normalised


def preset(
    model: str = "autoencoder",
    data: str = "shapes",
    aggregator: str = "metaslot",
    vqvae_variant: str = "c256",
    teacher: Path | None = None,
) -> TrainConfig:
    """The preset for ``--model`` × ``--data`` (× ``--aggregator``, ``--vqvae-variant``); with
    ``teacher`` (``--model spot`` only) SPOT's stage 2 taught by that stage-1 run."""
    model = _choose("model", model, MODELS + FTDINOSAUR_MODELS)
    data = _choose("data", data, DATASETS)
    aggregator = _choose("aggregator", aggregator, AGGREGATORS)
    variant = _choose("vqvae-variant", vqvae_variant, VQVAE_VARIANTS)
    if model in FTDINOSAUR_MODELS:
        if (model, data) not in FTDINOSAUR_PRESETS:
            raise ConfigError(
                f"--model {model} is trained on coco only (its published weights are): pass --data coco"
            )
        if aggregator == "adaslot":
            raise ConfigError(
                f"--model {model} decodes top-k slots, which needs a hard keep; AdaSlot's is soft: "
                "choose --aggregator metaslot or slot-attention"
            )
        return FTDINOSAUR_PRESETS[(model, data)](aggregator)
    function = PRESETS[(model, data)]
    config = function(variant) if model == "vqvae" else function()
    if aggregator == "slot-attention" and model != "vqvae":
        config = with_slot_attention(config)
    if aggregator == "adaslot" and model != "vqvae":
        config = with_adaslot(config)
    if teacher is not None:
        config = spot_stage_two(config, teacher)
    return config

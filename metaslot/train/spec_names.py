"""The stable names ``config.json`` gives the classes of a config (format 2), so moving or splitting a
module never breaks a saved run or a shared model.

A saved config names each spec by the key of `SPEC_NAMES` (``"MetaSlotSpec"``), not by where the class
lives. When a class moves, its entry's location changes and nothing that was saved does. Files written
before the names (format 1, ``"metaslot.models.aggregators.specs:MetaSlotSpec"``) still load: a
``module:QualName`` is read as the location it names, through `MOVED` for classes that have moved since.
A class of metaslot without an entry is saved under its ``module:QualName`` (a new spec still round
trips; `tests/train/test_config_format.py` asks for an entry for every class a preset uses).
"""

from __future__ import annotations

SPEC_NAMES: dict[str, str] = {
    "TrainConfig": "metaslot.train.config:TrainConfig",
    "OptimSpec": "metaslot.train.config:OptimSpec",
    "ScheduleSpec": "metaslot.train.config:ScheduleSpec",
    "LoopSpec": "metaslot.train.config:LoopSpec",
    "EvalSpec": "metaslot.eval_settings:EvalSpec",
    # models
    "AutoencoderSpec": "metaslot.models.pipelines.autoencoder:AutoencoderSpec",
    "DinosaurSpec": "metaslot.models.pipelines.dinosaur:DinosaurSpec",
    "VQVAESpec": "metaslot.models.pipelines.vqvae:VQVAESpec",
    "SlateSpec": "metaslot.models.pipelines.slate:SlateSpec",
    "SlotDiffusionSpec": "metaslot.models.pipelines.slotdiffusion:SlotDiffusionSpec",
    "SpotSpec": "metaslot.models.pipelines.spot:SpotSpec",
    "SlotAttentionSpec": "metaslot.models.aggregators.specs:SlotAttentionSpec",
    "MetaSlotSpec": "metaslot.models.aggregators.specs:MetaSlotSpec",
    "AdaSlotSpec": "metaslot.models.aggregators.specs:AdaSlotSpec",
    "CNNEncoderSpec": "metaslot.models.encoders.cnn:CNNEncoderSpec",
    "DinoViTSpec": "metaslot.models.encoders.vit:DinoViTSpec",
    "ProjectionSpec": "metaslot.models.encoders.projection:ProjectionSpec",
    "BroadcastPixelDecoderSpec": "metaslot.models.decoders.broadcast_pixel:BroadcastPixelDecoderSpec",
    "AttentionColourDecoderSpec": "metaslot.models.decoders.attention_colour:AttentionColourDecoderSpec",
    "MLPDecoderSpec": "metaslot.models.decoders.broadcast_mlp:MLPDecoderSpec",
    "ARDecoderSpec": "metaslot.models.decoders.autoregressive:ARDecoderSpec",
    "PermutedARDecoderSpec": "metaslot.models.decoders.permuted_autoregressive:PermutedARDecoderSpec",
    "DiffusionDecoderSpec": "metaslot.models.decoders.diffusion:DiffusionDecoderSpec",
    # data
    "ShapesSpec": "metaslot.data.shapes:ShapesSpec",
    "VOCSpec": "metaslot.data.published:VOCSpec",
    "COCOSpec": "metaslot.data.published:COCOSpec",
    "ClevrTexSpec": "metaslot.data.published:ClevrTexSpec",
    "MoviDSpec": "metaslot.data.video:MoviDSpec",
}
"""Stable name → where the class lives now (``module:QualName``). Never rename a key."""

MOVED: dict[str, str] = {"metaslot.train.config:EvalSpec": "metaslot.eval_settings:EvalSpec"}
"""Format-1 locations of classes that have moved since → where they live now."""

_NAME_OF_LOCATION = {location: name for name, location in SPEC_NAMES.items()}


def registered_name(location: str) -> str | None:
    """The stable name of the class at ``location`` (``module:QualName``), None when it has none."""
    return _NAME_OF_LOCATION.get(location)


def location_of(tag: str) -> str:
    """Where the class a saved ``__type__``/``__enum__`` tag names lives now: a stable name (format 2),
    or a ``module:QualName`` (format 1, a plug-in's class) through `MOVED`."""
    if tag in SPEC_NAMES:
        return SPEC_NAMES[tag]
    return MOVED.get(tag, tag)

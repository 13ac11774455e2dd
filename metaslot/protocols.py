"""Evaluation protocols: the ways published papers score object discovery, as named settings.

Numbers in this field are compared across papers that measure differently: instance vs class mBO,
masks compared at 320, 256, 224 or 128 pixels, decoder vs slot-attention masks, one token order vs the
mean of nine, the background counted as a segment or not. ``--evaluation.protocol NAME`` picks one set
of those choices; every choice can be overridden on its own (``--evaluation.mask-size 128``), and
``evaluation.json`` records the name, every resolved setting and which were overridden. The table
protocol → papers, and what still differs, is in docs/training.md ("Evaluation protocols").

This module sits below `metaslot.eval_settings` (which names a protocol in `EvalSpec`) and imports no
torch.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from metaslot import validators
from metaslot.errors import ConfigError

MaskSource = Literal["pipeline", "decoder", "attention"]
TokenOrders = Literal["first", "all"]
Background = Literal["segment", "ignored"]

PROTOCOL_NAMES = ("metaslot", "spot", "dinosaur", "adaslot")


@attrs.frozen(kw_only=True)
class ProtocolSettings:
    """One protocol's choices, resolved (no field left to a default elsewhere)."""

    name: str
    mask_size: int | None = attrs.field(validator=validators.or_none(validators.at_least_one))
    """Side of the square the predicted masks (bilinear) and the ground truth (nearest) are compared
    at; None: the data's resolution (the ground truth as the dataset gives it)."""
    masks: MaskSource = attrs.field(validator=validators.one_of("pipeline", "decoder", "attention"))
    """Which per-slot masks are scored: 'pipeline' (each pipeline's own: the decoder's where it has
    one that gives masks, else the aggregator's attention, as the MetaSlot reference), 'decoder' or
    'attention' (the aggregator's last-iteration attention)."""
    class_mbo: bool
    """Also report mBO^c (segments merged by semantic class) where the data carries class labels."""
    token_orders: TokenOrders = attrs.field(validator=validators.one_of("first", "all"))
    """SPOT's decoder at evaluation: order 0 only, or the mean over its nine patch orders."""
    background: Background = attrs.field(validator=validators.one_of("segment", "ignored"))
    """'segment': the ground-truth background is one segment like any object in mBO and mIoU, and the
    headline ARI keeps it (the MetaSlot reference, ``skip=[]``); 'ignored': mBO and mIoU average over
    the objects only and the headline ARI is FG-ARI (DINOSAUR, SPOT, AdaSlot)."""

    def headline(self) -> dict[str, str]:
        """The protocol's reported numbers: label → metric key of `metaslot.eval.evaluate`."""
        if self.background == "segment":
            return {"ARI": "ari", "FG-ARI": "fg_ari", "mBO^i": "mbo", "mIoU": "miou"}
        return {"FG-ARI": "fg_ari", "mBO^i": "mbo_fg", "mIoU": "miou_fg"}

    def describe(self) -> str:
        """One line for the printed table's header."""
        size = f"{self.mask_size} px" if self.mask_size is not None else "the data's resolution"
        return (
            f"protocol {self.name}: {self.masks} masks at {size}, background {self.background}, "
            f"token orders {self.token_orders}, class mBO {'on' if self.class_mbo else 'off'}"
        )

    def as_json(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(ProtocolSettings)}


PROTOCOLS: dict[str, ProtocolSettings] = {
    # The MetaSlot reference (and its parent VQ-VFM-OCL): masks bilinear to the 256-px input, argmax,
    # background counted (`skip=[]`), one token order (`perm_v="default"`), no class mBO.
    "metaslot": ProtocolSettings(
        name="metaslot", mask_size=None, masks="pipeline", class_mbo=False, token_orders="first", background="segment"
    ),
    # SPOT (train_spot_2.py / eval_spot.py, README's evaluation): decoder masks at 320 px for COCO/VOC
    # (128 for MOVi: override the size), mBO^i and mBO^c without the background, all nine orders.
    "spot": ProtocolSettings(
        name="spot", mask_size=320, masks="decoder", class_mbo=True, token_orders="all", background="ignored"
    ),
    # DINOSAUR (Seitzer et al. 2023): decoder alpha at 320 px, FG-ARI and mBO without the background
    # (videosaur's README: "320x320 masks in the DINOSAUR paper"), mBO^c on COCO.
    "dinosaur": ProtocolSettings(
        name="dinosaur", mask_size=320, masks="decoder", class_mbo=True, token_orders="first", background="ignored"
    ),
    # AdaSlot (Fan et al. 2024): DINOSAUR's model, COCO masks at 224 px (128 on MOVi), the decoder's
    # alpha, FG-ARI and mBO without the background, instance mBO only.
    "adaslot": ProtocolSettings(
        name="adaslot", mask_size=224, masks="decoder", class_mbo=False, token_orders="first", background="ignored"
    ),
}


def resolve_protocol(
    name: str,
    *,
    mask_size: int | None = None,
    masks: MaskSource | None = None,
    class_mbo: bool | None = None,
    token_orders: TokenOrders | None = None,
    background: Background | None = None,
) -> tuple[ProtocolSettings, list[str]]:
    """The settings of protocol ``name`` with the given overrides (None keeps the protocol's; a
    ``mask_size`` of 0 means the data's resolution), and the names of the settings overridden (to a
    value other than the protocol's)."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {name!r}: choose one of {', '.join(PROTOCOL_NAMES)}")
    base = PROTOCOLS[name]
    given = dict(mask_size=mask_size, masks=masks, class_mbo=class_mbo, token_orders=token_orders, background=background)
    changes: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if changes.get("mask_size") == 0:
        changes["mask_size"] = None
    overridden = sorted(key for key, value in changes.items() if getattr(base, key) != value)
    return attrs.evolve(base, **changes), overridden

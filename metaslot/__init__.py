"""metaslot: a typed, functional-core PyTorch toolkit for object-centric learning around MetaSlot.

Shape checking: with ``METASLOT_TYPECHECK=1`` in the environment (the test suite sets it) every
jaxtyping-annotated function and record of the package is checked by beartype at call time. It is off
by default because it costs Python time on every call and cannot be traced by ``torch.compile``.
"""

from __future__ import annotations

from metaslot._lazy import lazy_exports
from metaslot.typechecking import __version__, typechecking_enabled

if typechecking_enabled():
    from jaxtyping import install_import_hook

    # Stays installed: every metaslot submodule imported from now on is instrumented.
    install_import_hook("metaslot", "beartype.beartype")

# Public names resolved lazily so that `import metaslot` stays light (no torch import for `--help`).
_LAZY = {
    "MetaSlot": "metaslot.models.aggregators",
    "SlotAttention": "metaslot.models.aggregators",
    "MetaSlotSpec": "metaslot.models.aggregators",
    "SlotAttentionSpec": "metaslot.models.aggregators",
    "AdaSlot": "metaslot.models.aggregators",
    "AdaSlotSpec": "metaslot.models.aggregators",
    "AggregatorOutput": "metaslot.models.records",
    "load": "metaslot.pretrained",
    "save_pretrained": "metaslot.pretrained",
    "push_to_hub": "metaslot.pretrained",
    "list_models": "metaslot.pretrained",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [*_LAZY, "typechecking_enabled", "__version__"]

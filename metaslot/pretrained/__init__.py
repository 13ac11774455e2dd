"""Use a trained model: load it from a run, a checkpoint, a folder or the hub; segment; share it.

``metaslot.load(source)`` (also ``metaslot.pretrained.load``) returns a pipeline in evaluation mode
whose every weight comes from ``source``; slot pipelines then segment images from anywhere with
``pipeline.segment(images)``. ``save_pretrained`` writes a self-contained folder and ``push_to_hub``
uploads it. This package sits above training and evaluation; only the CLI and ``metaslot``'s lazy
exports import it.
"""

from __future__ import annotations

from metaslot._lazy import lazy_exports

_LAZY = {
    "load": "metaslot.pretrained.loading",
    "load_checkpoint": "metaslot.pretrained.loading",
    "origin_of": "metaslot.pretrained.loading",
    "Origin": "metaslot.pretrained.loading",
    "save_pretrained": "metaslot.pretrained.sharing",
    "push_to_hub": "metaslot.pretrained.sharing",
    "without_downloads": "metaslot.pretrained.building",
    "list_models": "metaslot.pretrained.catalog",
    "find_model": "metaslot.pretrained.catalog",
    "PublishedModel": "metaslot.pretrained.catalog",
    "ModelNotFoundError": "metaslot.pretrained.errors",
    "HubError": "metaslot.pretrained.errors",
    "OutputFolderError": "metaslot.pretrained.errors",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [*_LAZY]

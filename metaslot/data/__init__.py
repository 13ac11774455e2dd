"""Datasets (synthetic shapes, VOC, COCO, ClevrTex, MOVi-D), safe LMDB I/O, transforms, loaders.

The public names below resolve lazily (``from metaslot.data import VOCSpec`` imports only
``metaslot.data.published``), so importing the package stays light: no lmdb, OpenCV or PyAV until a
dataset is used.
"""

from __future__ import annotations

from metaslot._lazy import lazy_exports

# Public name → the module that defines it.
_LAZY = {
    "Sample": "metaslot.data.records",
    "Batch": "metaslot.data.records",
    "collate": "metaslot.data.records",
    "ItemKey": "metaslot.data.sampling",
    "ResumableSampler": "metaslot.data.sampling",
    "make_loader": "metaslot.data.loader",
    "collate_images": "metaslot.data.loader",
    "ShapesSpec": "metaslot.data.shapes",
    "ShapesDataset": "metaslot.data.shapes",
    "PublishedImageSpec": "metaslot.data.published",
    "VOCSpec": "metaslot.data.published",
    "COCOSpec": "metaslot.data.published",
    "ClevrTexSpec": "metaslot.data.published",
    "LmdbImageDataset": "metaslot.data.published",
    "MoviDSpec": "metaslot.data.video",
    "MoviDDataset": "metaslot.data.video",
    "VideoSample": "metaslot.data.video",
    "VideoBatch": "metaslot.data.video",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = list(_LAZY)

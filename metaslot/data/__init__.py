"""Datasets (synthetic shapes, VOC, COCO, ClevrTex, MOVi-D), safe LMDB I/O, transforms, loaders."""

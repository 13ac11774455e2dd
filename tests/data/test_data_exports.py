"""``metaslot.data`` exports: every public name resolves lazily to the defining module's object."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import metaslot.data


def test_every_exported_name_resolves_to_its_module() -> None:
    assert len(metaslot.data.__all__) == len(set(metaslot.data.__all__))
    for name in metaslot.data.__all__:
        value = getattr(metaslot.data, name)
        defining = importlib.import_module(metaslot.data._LAZY[name])
        assert value is getattr(defining, name), name
        assert name in dir(metaslot.data), name
    namespace: dict[str, object] = {}
    exec("from metaslot.data import *", namespace)
    assert set(metaslot.data.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchSpec'"):
        metaslot.data.NoSuchSpec  # noqa: B018


def test_the_documented_public_api_is_exported() -> None:
    expected = {
        "ShapesSpec",
        "VOCSpec",
        "COCOSpec",
        "ClevrTexSpec",
        "MoviDSpec",
        "make_loader",
        "Sample",
        "Batch",
        "VideoSample",
        "ItemKey",
        "ResumableSampler",
    }
    assert expected <= set(metaslot.data.__all__)


def test_importing_the_package_loads_no_dataset_backend() -> None:
    script = (
        "import sys\n"
        "import metaslot.data\n"
        "loaded = {'lmdb', 'cv2', 'av', 'torch'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    # Shape checking off: this checks imports only (the hook itself would pull in more modules).
    environment = {**os.environ, "METASLOT_TYPECHECK": "0"}
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=environment)

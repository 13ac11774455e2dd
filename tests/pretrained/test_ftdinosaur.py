"""FT-DINOSAUR's published files: key-by-key mapping, equal outputs, the hub path offline, one-line errors.

The state dicts are built here in the publisher's layout (`ftdinosaur_reference`), never downloaded; the
tiny model is the preset's with small widths (12 ViT-S/14 blocks at 56×56, position embedding stored
for 84×84 as the real files store 518×518 for 224 inputs).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import torch

import metaslot
from metaslot.errors import CheckpointError, CheckpointMismatchError, ConfigError
from metaslot.ops.imagenet import IMAGENET_MEAN, IMAGENET_STD
from metaslot.pretrained import HubError, ftdinosaur
from metaslot.pretrained.building import build_for_weights
from metaslot.train.config import TrainConfig
from metaslot.train.presets import FTDINOSAUR_MODELS, preset
from tests.support.ftdinosaur_reference import ReferenceLayout, forward, layout_shapes, random_weights

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY = ReferenceLayout(
    width=384, depth=12, heads=6, position_grid=6, slot_dim=32, decoder_hidden=(64, 64), num_tokens=16
)
TOP_K = 2
SLOTS = 5


def tiny_config(model: str = "ftdinosaur-small-224") -> TrainConfig:
    """The preset's pipeline with the widths of `TINY` (same structure, small sizes), without target encoder."""
    config = preset(model=model, data="coco", aggregator="slot-attention")
    spec = config.model
    aggregator = attrs.evolve(
        spec.aggregator, num_slots=SLOTS, slot_dim=32, feature_dim=32, mlp_hidden_dim=128
    )
    model_spec = attrs.evolve(
        spec,
        encoder=attrs.evolve(spec.encoder, image_size=56, position_size=84, pretrained=False),
        aggregator=aggregator,
        decoder=attrs.evolve(spec.decoder, hidden_channels=(64, 64), top_k=TOP_K),
        image_size=56,
        target_encoder=None,
    )
    return attrs.evolve(config, model=model_spec)


def tiny_pipeline_with(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    pipeline = build_for_weights(tiny_config().model)
    ftdinosaur.load_state_into(pipeline, weights)
    return pipeline.eval()


def _compare(
    pipeline: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    layout: ReferenceLayout,
    top_k: int,
    size: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Our outputs beside the reference's on the same images and the same initial slots."""
    batch, slots = 2, pipeline.aggregator.spec.num_slots
    image = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    # The shared initialiser samples at evaluation: the same unit draw on both sides.
    unit = torch.randn(batch, slots, layout.slot_dim, generator=torch.Generator().manual_seed(2))
    initial = weights["slot_init.slots_mu"] + unit * weights["slot_init.slots_logsigma"].exp()
    with torch.no_grad():
        ours = pipeline(image, generator=torch.Generator().manual_seed(2))
        theirs = forward(image, initial, weights, layout, top_k)
        our_features = pipeline.frontend.encoder(image)
    assert theirs.token_masks.gt(0).sum(dim=1).eq(top_k).all()  # top-k took effect
    return {
        "features": (our_features, theirs.features),
        "slots": (ours.slots, theirs.slots),
        "attention": (ours.aggregator.attention, theirs.attention),
        "reconstruction": (ours.reconstruction, theirs.reconstruction),
        "masks": (ours.masks, theirs.masks),
    }


def test_a_state_dict_in_their_layout_gives_the_reference_outputs() -> None:
    weights = random_weights(TINY, seed=0)
    pairs = _compare(tiny_pipeline_with(weights), weights, TINY, TOP_K, 56)
    differences = {name: (a - b).abs().max().item() for name, (a, b) in pairs.items()}
    print("largest differences:", differences)  # shown with -s; reported in the closing note
    for name, (a, b) in pairs.items():
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


FULL_SIZE = os.environ.get("METASLOT_FULLSIZE_FTDINOSAUR", "0") not in ("", "0")


@pytest.mark.slow
@pytest.mark.parametrize("model", FTDINOSAUR_MODELS)
def test_full_size_random_weights_give_the_reference_outputs(model: str) -> None:
    """The real presets (ViT-S/B, 12 blocks, 7 slots, 3×2048 decoder, top-3) on random weights in their
    layout. small-224 always runs (seconds); the others with METASLOT_FULLSIZE_FTDINOSAUR=1 (minutes)."""
    if model != "ftdinosaur-small-224" and not FULL_SIZE:
        pytest.skip("minutes on a CPU: set METASLOT_FULLSIZE_FTDINOSAUR=1 to run it")
    layout = _full_layout(model)
    weights = random_weights(layout, seed=0)
    entry = ftdinosaur.find_file(model.removeprefix("ftdinosaur-"))
    pipeline = build_for_weights(ftdinosaur.inference_spec(ftdinosaur.preset_config(entry)))
    ftdinosaur.load_state_into(pipeline, weights)
    resolution = int(model.rsplit("-", 1)[1])
    pairs = _compare(pipeline.eval(), weights, layout, 3, resolution)
    differences = {name: (a - b).abs().max().item() for name, (a, b) in pairs.items()}
    print(model, "largest differences:", differences)
    for name, (a, b) in pairs.items():
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


def _full_layout(model: str) -> ReferenceLayout:
    size, resolution = model.removeprefix("ftdinosaur-").split("-")
    return ReferenceLayout(
        width={"small": 384, "base": 768}[size],
        depth=12,
        heads={"small": 6, "base": 12}[size],
        position_grid=37,
        slot_dim=256,
        decoder_hidden=(2048, 2048, 2048),
        num_tokens=(int(resolution) // 14) ** 2,
    )


@pytest.mark.parametrize("model", FTDINOSAUR_MODELS)
def test_every_published_layout_maps_onto_its_full_size_preset(model: str) -> None:
    layout = _full_layout(model)
    theirs = {key: torch.empty(shape, device="meta") for key, shape in layout_shapes(layout).items()}
    entry = ftdinosaur.find_file(model.removeprefix("ftdinosaur-"))
    with torch.device("meta"):
        pipeline = build_for_weights(ftdinosaur.inference_spec(ftdinosaur.preset_config(entry)))
    own = pipeline.state_dict()
    mapped = ftdinosaur.map_state_dict(theirs, own)
    assert set(mapped) == set(own)
    assert set(own) - {ftdinosaur.our_key(key) for key in theirs} == set(ftdinosaur.UNUSED_KEYS)
    assert ftdinosaur.guess_model(theirs) == entry.name


def test_a_missing_extra_or_misshaped_key_names_the_keys_and_the_model() -> None:
    pipeline = build_for_weights(tiny_config().model)
    weights = random_weights(TINY, seed=0)
    broken = dict(weights)
    del broken["slot_attention.slot_attention.to_q.weight"]
    broken["decoder.extra"] = torch.zeros(1)
    broken["decoder.pos_embed"] = torch.zeros(1, 9, 32)
    with pytest.raises(CheckpointMismatchError) as caught:
        ftdinosaur.load_state_into(pipeline, broken)
    message = str(caught.value)
    assert "\n" not in message
    assert "decoder.extra" in message
    assert "frontend.aggregator.project_queries.weight" in message
    assert "decoder.pos_embed (1, 9, 32)" in message
    # Full-size shapes tell which published model a file is.
    wrong_size = {"encoder.cls_token": torch.zeros(1, 1, 768), "decoder.pos_embed": torch.zeros(1, 1369, 256)}
    with pytest.raises(CheckpointMismatchError, match="ftdinosaur:base-518"):
        ftdinosaur.load_state_into(pipeline, wrong_size)


def test_top_k_decoding_on_a_hand_case() -> None:
    """3 slots, 2 tokens, top 2: slot 2 is left out at token 0, slot 0 at token 1; alpha is the softmax
    of the chosen slots' logits and the reconstruction their weighted features."""
    from metaslot.models.decoders import MLPDecoderSpec

    decoder = MLPDecoderSpec(hidden_channels=(4,), activation="relu", top_k=2).build(
        slot_dim=2, feature_dim=1, num_tokens=2
    )
    with torch.no_grad():
        decoder.position.zero_()
        first, last = decoder.mlp[0], decoder.mlp[2]
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
        first.bias.zero_()
        # feature = relu(x0) + relu(-x0) = |x0|; logit = relu(x1) - relu(-x1) = x1
        last.weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]))
        last.bias.zero_()
    slots = torch.tensor([[[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]])  # features 1, 2, 3; logits 0, 1, 2
    scores = torch.tensor([[[0.5, 0.1], [0.3, 0.3], [0.2, 0.6]]])  # token 0: slots 0, 1; token 1: 1, 2
    output = decoder(slots, scores=scores)
    e = torch.e
    alpha = torch.tensor([[[1 / (1 + e), 0.0], [e / (1 + e), 1 / (1 + e)], [0.0, e / (1 + e)]]])
    torch.testing.assert_close(output.alpha, alpha)
    reconstruction = torch.tensor([[[1 / (1 + e) + 2 * e / (1 + e)], [2 / (1 + e) + 3 * e / (1 + e)]]])
    torch.testing.assert_close(output.reconstruction, reconstruction)
    # A pruned slot is never chosen while enough slots are kept: drop slot 0 → token 0 takes 1 and 2.
    kept = decoder(slots, keep=torch.tensor([[False, True, True]]), scores=scores)
    torch.testing.assert_close(kept.alpha[0, :, 0], torch.tensor([0.0, 1 / (1 + e), e / (1 + e)]))
    with pytest.raises(ValueError, match="scores"):
        decoder(slots)


def _their_file(path: Path) -> Path:
    torch.save(random_weights(TINY, seed=0), path)
    return path


def _fake_hub_cache(cache: Path, file: Path) -> None:
    """The layout huggingface_hub's cache has after downloading one file of the FT-DINOSAUR repo."""
    repo = cache / f"models--{ftdinosaur.REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def tiny_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every FT-DINOSAUR name loads into the tiny pipeline (the full-size mapping is tested on meta)."""
    monkeypatch.setattr(ftdinosaur, "preset_config", lambda entry: tiny_config(entry.model))


def test_load_by_name_reads_the_hub_cache_offline(tiny_presets: None, tmp_path: Path) -> None:
    entry = ftdinosaur.find_file("small-224")
    _fake_hub_cache(tmp_path / "hub", _their_file(tmp_path / entry.file_name))
    loaded = metaslot.load("ftdinosaur:small-224", cache_dir=tmp_path / "hub")
    expected = tiny_pipeline_with(random_weights(TINY, seed=0))
    assert not loaded.training
    for name, tensor in expected.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    origin = metaslot.pretrained.origin_of(loaded)
    assert origin is not None and origin.checkpoint == entry.file_name
    assert origin.config.model.target_encoder is None


def test_a_loaded_file_saves_as_a_folder_that_loads_bit_exact(tiny_presets: None, tmp_path: Path) -> None:
    entry = ftdinosaur.find_file("small-224")
    loaded = metaslot.load(_their_file(tmp_path / entry.file_name))
    folder = metaslot.save_pretrained(loaded, tmp_path / "saved")
    again = metaslot.load(folder)
    assert sorted(again.state_dict()) == sorted(loaded.state_dict())
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_cli_convert_checkpoint_takes_an_ftdinosaur_file(
    tiny_presets: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metaslot.cli import convert as convert_cli

    file = _their_file(tmp_path / "weights.pth")
    out = tmp_path / "converted"
    convert_cli.main(
        ["checkpoint", str(file), "--model", "ftdinosaur-small-224", "--data", "coco", "--out", str(out)]
    )
    assert "wrote" in capsys.readouterr().out
    converted = metaslot.load(out)
    expected = tiny_pipeline_with(random_weights(TINY, seed=0))
    for name, tensor in expected.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor), name


def test_load_by_path_recognises_the_published_file_name(tiny_presets: None, tmp_path: Path) -> None:
    entry = ftdinosaur.find_file("small-518")
    loaded = metaslot.load(_their_file(tmp_path / entry.file_name))
    assert metaslot.pretrained.origin_of(loaded).config.name == "ftdinosaur-small-518-coco-sa"
    renamed = _their_file(tmp_path / "weights.pth")
    loaded = metaslot.load(renamed, model="ftdinosaur-small-224", data="coco")
    assert metaslot.pretrained.origin_of(loaded).config.name == "ftdinosaur-small-224-coco-sa"
    with pytest.raises(ConfigError, match="coco only"):
        metaslot.load(renamed, model="ftdinosaur-small-224", data="voc")


def test_offline_without_the_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    entry = ftdinosaur.find_file("base-518")
    with pytest.raises(HubError) as caught:
        metaslot.load("ftdinosaur:base-518", cache_dir=tmp_path / "empty")
    message = str(caught.value)
    assert "\n" not in message
    assert entry.file_name in message and entry.url in message and "hf download" in message
    with pytest.raises(ConfigError, match="ftdinosaur:small-224"):
        metaslot.load("ftdinosaur:huge-1024")


def test_first_download_prints_size_and_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _their_file(tmp_path / "weights.pth")
    published = ftdinosaur.published_model(ftdinosaur.find_file("small-224"))
    assert published in metaslot.list_models() and published.sha256 is None
    ftdinosaur.verify_or_report(published, file, first_download=True)
    report = capsys.readouterr().err
    assert str(file.stat().st_size) in report and hashlib.sha256(file.read_bytes()).hexdigest() in report
    ftdinosaur.verify_or_report(published, file, first_download=False)
    assert capsys.readouterr().err == ""
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    ftdinosaur.verify_or_report(attrs.evolve(published, sha256=digest), file, first_download=False)
    with pytest.raises(CheckpointError, match="SHA-256"):
        ftdinosaur.verify_or_report(attrs.evolve(published, sha256="0" * 64), file, first_download=False)


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_a_pickle_that_runs_code_and_a_truncated_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps({"encoder.cls_token": _RunsCode()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused") as caught:
        ftdinosaur.read_state_dict(hostile)
    assert "\n" not in str(caught.value)
    assert "this must never run" not in capsys.readouterr().out
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(_their_file(tmp_path / "whole.pth").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        ftdinosaur.read_state_dict(truncated)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, wrapped)
    assert list(ftdinosaur.read_state_dict(wrapped)) == ["a"]


@pytest.mark.parametrize("model", FTDINOSAUR_MODELS)
def test_the_presets_round_trip_and_refuse_what_they_cannot_be(model: str) -> None:
    from metaslot.train.config import config_from_json, config_to_json

    for aggregator in ("metaslot", "slot-attention"):
        config = preset(model, "coco", aggregator)
        assert config_from_json(config_to_json(config)) == config
        assert config.model.decoder.top_k == 3 and config.model.aggregator.num_slots == 7
        assert config.model.target_encoder.frozen and not config.model.encoder.frozen
        assert config.data.resolution == config.model.image_size == int(model.rsplit("-", 1)[1])
    with pytest.raises(ConfigError, match="coco only"):
        preset(model, "voc", "slot-attention")
    with pytest.raises(ConfigError, match="AdaSlot"):
        preset(model, "coco", "adaslot")


def _hub_handler(files: dict[str, bytes], requests: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """What huggingface_hub asks the hub for one file: HEAD then GET on /<repo>/resolve/<rev>/<file>."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> bytes | None:
            requests.append(f"{self.command} {self.path}")
            payload = files.get(self.path)
            if payload is None:
                self.send_response(404)
                self.end_headers()
                return None
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(payload).hexdigest()}"')
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            return payload

        def do_HEAD(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            payload = self._answer()
            if payload is not None:
                self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def local_hub(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes], list[str]]]:
    files: dict[str, bytes] = {}
    requests: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _hub_handler(files, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files, requests
    server.shutdown()
    server.server_close()


def test_download_from_a_local_hub_prints_the_digest_then_loads_offline_from_the_cache(
    tiny_presets: None, tmp_path: Path, local_hub: tuple[str, dict[str, bytes], list[str]]
) -> None:
    """The real download path (huggingface_hub against a local server, in a child process: the hub's
    endpoint and offline switch are read at import), then this process, offline, loads from that cache."""
    endpoint, files, requests = local_hub
    entry = ftdinosaur.find_file("small-224")
    payload = _their_file(tmp_path / entry.file_name).read_bytes()
    files[f"/{ftdinosaur.REPO_ID}/resolve/main/{entry.file_name}"] = payload
    cache = tmp_path / "hub"
    environment = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "METASLOT_TYPECHECK": "0",  # the download is what is tested here; the import hook only slows it
        "HF_HOME": str(tmp_path / "hf-home"),
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    script = (
        "import sys; from pathlib import Path; from metaslot.pretrained import ftdinosaur; "
        "print(ftdinosaur.download(ftdinosaur.find_file('small-224'), cache_dir=Path(sys.argv[1])))"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(cache)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert Path(child.stdout.strip()).read_bytes() == payload
    assert f"{len(payload)} bytes, SHA-256 {hashlib.sha256(payload).hexdigest()}" in child.stderr
    assert any(line.startswith("GET ") and entry.file_name in line for line in requests)
    loaded = metaslot.load("ftdinosaur:small-224", cache_dir=cache)  # offline here: the cache only
    expected = tiny_pipeline_with(random_weights(TINY, seed=0))
    for name, tensor in expected.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_the_publishers_preprocessing_is_torchvisions_pipeline_of_their_loader() -> None:
    from torchvision.transforms import v2 as transforms

    images = torch.randint(
        0, 256, (2, 3, 45, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    theirs = transforms.Compose(
        [
            transforms.ToImage(),
            transforms.Resize((28, 28), interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.ToDtype(torch.float32, scale=True),
            transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )
    expected = torch.stack([theirs(image) for image in images])
    assert torch.equal(ftdinosaur.publisher_preprocess(images, 28), expected)


def test_a_file_of_another_model_names_itself_in_one_line(tiny_presets: None, tmp_path: Path) -> None:
    weights = random_weights(TINY, seed=0)
    del weights["decoder.decoder.0.bias"]
    file = tmp_path / "other.pth"
    torch.save(weights, file)
    with pytest.raises(CheckpointMismatchError) as caught:
        metaslot.load(file, model="ftdinosaur-small-224")
    assert str(file) in str(caught.value) and "decoder.mlp.0.bias" in str(caught.value)
    assert "\n" not in str(caught.value)

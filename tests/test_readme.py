"""The README and the docs stay true: their Python runs, their commands parse or run, their tables match the code.

Every ``python -m cli.X`` / ``torchrun ... -m cli.train`` line of a ```bash block in README.md,
docs/training.md and docs/data.md goes through the real entry point, in document order, inside a temporary
working directory: the default main job (``python -m cli.train``, ``--resume [runs/NAME]``), ``cli.eval``,
``cli.visualize`` (also on the reader's own ``--image`` files) and ``cli.share`` really run, shrunk by
appending tiny overrides (``--push-to`` uploads nothing); other training commands (paper presets
that need datasets, weights or GPUs) are parsed into their `TrainConfig` without training, and ``cli.eval``
lines on those runs parse against that config; ``cli.convert``
and ``cli.download`` lines parse down to the converter or download call. Lines that need the internet (``pip``, ``hf download``) are not run.
The Python examples run too; the one that loads ``runs/autoencoder-shapes`` runs where a shrunk default job trained.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = (README, ROOT / "docs" / "training.md", ROOT / "docs" / "data.md")

# Appended to the default job's commands so they run in seconds: 3 slots of width 8 on 8 tiny images.
TINY_DEFAULT_JOB = [
    "--device", "cpu", "--no-progress",
    "--data.train-size", "8", "--data.val-size", "4",
    "--model.encoder.channels", "8", "8", "--model.encoder.strides", "2", "1", "--model.encoder.kernel-size", "3",
    "--model.aggregator.num-slots", "3", "--model.aggregator.slot-dim", "8", "--model.aggregator.feature-dim", "8",
    "--model.aggregator.mlp-hidden-dim", "16", "--model.aggregator.codebook-size", "8",
    "--model.aggregator.buffer-capacity", "16",
    "--loop.batch-size", "2", "--loop.val-every", "2", "--loop.val-batches", "1", "--loop.checkpoint-every", "2",
    "--loop.log-every", "1", "--evaluation.pictures", "2", "--evaluation.gallery-examples", "2",
]  # fmt: skip
TINY_STEPS = 2
# The default job's length in the documents' runs: each run stops after its share (--loop.stop-at), so
# every documented --resume (which may not change --loop.steps) has steps left to train.
TINY_TOTAL_STEPS = 10


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def bash_commands(text: str) -> list[list[str]]:
    """Each simple command (split at ``&&``) of every ```bash block, as argv words, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1 :]
    return [command for command in commands if command]


def without_environment(words: list[str]) -> list[str]:
    """Drop leading ``NAME=value`` assignments (``HF_HUB_OFFLINE=1 python ...``)."""
    index = 0
    while index < len(words) and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[index]):
        index += 1
    return words[index:]


def written_since(started: float, name: str) -> list[Path]:
    """Files called ``name`` below the working directory that were written at or after ``started``."""
    return [path for path in Path().rglob(name) if path.stat().st_mtime >= started - 1]


def test_readme_has_python_examples() -> None:
    assert python_blocks(README.read_text()), "README.md lost its ```python examples"


MY_IMAGE = (45, 60)  # height, width of the `my.png` the README's loading example segments


def write_png(path: Path, height: int, width: int) -> None:
    import numpy
    import PIL.Image

    pixels = numpy.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=numpy.uint8)
    PIL.Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def trained_default_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``runs/autoencoder-shapes`` (the default job, shrunk) and ``my.png``."""
    from metaslot.cli import train as train_cli

    folder = tmp_path_factory.mktemp("readme")
    train_cli.main([*TINY_DEFAULT_JOB, "--loop.steps", str(TINY_STEPS), "--runs-dir", str(folder / "runs")])
    write_png(folder / "my.png", *MY_IMAGE)
    return folder


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text()))))
def test_readme_python_block_runs(
    index: int, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = python_blocks(README.read_text())[index]
    loads_a_run = "metaslot.load(" in code
    if loads_a_run:  # the example on a trained model: run it where the default job has trained
        monkeypatch.chdir(request.getfixturevalue("trained_default_job"))
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    if loads_a_run:
        segmentation = namespace["out"]
        assert segmentation.labels.shape == (1, *MY_IMAGE) and segmentation.masks.shape[-2:] == MY_IMAGE


def test_readme_setup_commands_are_the_two_promised() -> None:
    commands = [" ".join(without_environment(c)) for c in bash_commands(README.read_text())]
    assert commands[:4] == ["pip install nox", "nox -s tests", "pip install -e .", "python -m cli.train"]
    noxfile = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = {
        node.name
        for node in ast.walk(noxfile)
        if isinstance(node, ast.FunctionDef) and any("session" in ast.unparse(d) for d in node.decorator_list)
    }
    assert "tests" in sessions, "README says `nox -s tests`, but noxfile.py has no `tests` session"


class CommandRunner:
    """Runs or parses one documented command through the entry functions the console scripts call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.default_job_steps = 0
        self.done: set[tuple[str, ...]] = set()
        self.parsed: dict[str, Any] = {}  # run name → the TrainConfig a documented training command parsed to

    def __call__(self, words: list[str], where: str) -> None:
        words = without_environment(words)
        program, arguments = words[0], words[1:]
        if program in ("pip", "hf"):  # network: installing and downloading are not repeated here
            return
        if program == "nox":
            assert arguments == ["-s", "tests"], f"{where}: unexpected nox command {words}"
            return
        if program == "torchrun":
            from torch.distributed.run import get_args_parser

            options = get_args_parser().parse_args(arguments)
            assert options.module, f"{where}: torchrun needs -m to run the cli.train module"
            module, arguments = options.training_script, list(options.training_script_args)
        else:
            assert program == "python" and arguments[:1] == ["-m"], (
                f"{where}: not a documented kind of command"
            )
            module, arguments = arguments[1], arguments[2:]
        handlers = {
            "cli.train": self.train,
            "cli.eval": self.evaluate,
            "cli.visualize": self.visualize,
            "cli.convert": self.convert,
            "cli.download": self.download,
            "cli.share": self.share,
        }
        assert module in handlers, f"{where}: no check for `python -m {module}`; teach tests/test_readme.py"
        if (module, *arguments) in self.done and module in ("cli.eval", "cli.visualize"):
            return  # the same command in a later document: it ran already
        self.done.add((module, *arguments))
        handlers[module](arguments, where)

    def train(self, arguments: list[str], where: str) -> None:
        from metaslot.cli import train as train_cli

        if "--help" in arguments or "-h" in arguments:
            with pytest.raises(SystemExit) as stopped:
                train_cli.parse_train_arguments(arguments)
            assert stopped.value.code == 0, f"{where}: --help failed"
            return
        config, invocation = train_cli.parse_train_arguments(arguments)
        self.parsed[config.name] = config
        is_default_job = invocation["selection"] == train_cli.default_selection()
        extra_flags = [word for word in arguments if word.startswith("--") and word != "--resume"]
        if not is_default_job or extra_flags:
            return  # a preset that needs datasets, weights or GPUs: parsing it is the check
        resume = "--resume" in arguments
        if not resume and self.default_job_steps > 0:
            return  # the main job repeated in a later document: it ran once already
        assert not resume or self.default_job_steps > 0, f"{where}: --resume before the default job ran"
        self.default_job_steps += 1 if resume else TINY_STEPS
        assert self.default_job_steps < TINY_TOTAL_STEPS, "raise TINY_TOTAL_STEPS for the new --resume lines"
        length = ["--loop.steps", str(TINY_TOTAL_STEPS), "--loop.stop-at", str(self.default_job_steps)]
        train_cli.main([*arguments, *TINY_DEFAULT_JOB, *length])
        checkpoint = Path("runs") / config.name / "checkpoints" / f"step-{self.default_job_steps:07d}.json"
        assert checkpoint.is_file(), f"{where}: no checkpoint {checkpoint}"

    def evaluate(self, arguments: list[str], where: str) -> None:
        from metaslot.cli import eval as eval_cli

        source = Path(arguments[0])
        if (source / "config.json").is_file() and "reference" in (
            json.loads((source / "config.json").read_text()).get("pretrained") or {}
        ):
            # A converted reference model of a paper dataset (not here): its flags must parse against it.
            known, rest = eval_cli._selector_parser("python -m cli.eval").parse_known_args(arguments)
            config = eval_cli._load_run_config(source)
            eval_cli._evaluation_options(config, known, rest, "python -m cli.eval", False)
            return
        if not source.exists() and source.parent == Path("runs") and source.name in self.parsed:
            # A paper run that a documented command trains (not here): its flags must parse against it.
            known, rest = eval_cli._selector_parser("python -m cli.eval").parse_known_args(arguments)
            eval_cli._evaluation_options(self.parsed[source.name], known, rest, "python -m cli.eval", False)
            return
        started = time.time()
        eval_cli.main(arguments)
        assert written_since(started, "evaluation.json"), f"{where}: no evaluation.json written"

    def visualize(self, arguments: list[str], where: str) -> None:
        from metaslot.cli import visualize as visualize_cli

        if "--image" in arguments:  # the reader's own files: any picture will do
            for word in arguments[arguments.index("--image") + 1 :]:
                if word.startswith("--"):
                    break
                if not Path(word).exists():
                    write_png(Path(word), 40, 52)
        started = time.time()
        visualize_cli.main(arguments)
        assert written_since(started, "segmentation.png"), f"{where}: no pictures written"

    def share(self, arguments: list[str], where: str) -> None:
        from metaslot.cli import share as share_cli

        pushed: list[tuple[Path, str]] = []

        def push_to_hub(folder: Path, repo_id: str, **options: Any) -> str:
            pushed.append((folder, repo_id))
            return f"https://huggingface.co/{repo_id}"

        self.monkeypatch.setattr("metaslot.pretrained.sharing.push_to_hub", push_to_hub)  # the network
        share_cli.main(arguments)
        folder = Path(arguments[1])
        assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file(), where
        if "--push-to" in arguments:
            assert pushed == [(folder, arguments[arguments.index("--push-to") + 1])], where

    def convert(self, arguments: list[str], where: str) -> None:
        from metaslot.cli import convert as convert_cli

        if arguments[:1] == ["checkpoint"]:
            self.convert_checkpoint(arguments, where)
            return

        calls: list[tuple[str, Any, Any]] = []
        for name in ("convert_voc", "convert_coco", "convert_clevrtex"):

            def record(raw_dir: Path, out_dir: Path, *, name: str = name, **options: Any) -> Any:
                from metaslot.data.convert import ConversionReport

                calls.append((name, raw_dir, out_dir))
                return ConversionReport(counts={})

            self.monkeypatch.setattr(convert_cli, name, record)
        convert_cli.main(arguments)
        assert [call[0] for call in calls] == [f"convert_{arguments[0]}"], f"{where}: converter not called"
        assert isinstance(calls[0][1], Path) and isinstance(calls[0][2], Path)

    def convert_checkpoint(self, arguments: list[str], where: str) -> None:
        """A reference file the reader downloaded: made here with random weights for a tiny version of
        its preset (which the conversion then builds), so the documented path runs in seconds."""
        import attrs
        import torch

        from metaslot.cli import convert as convert_cli
        from metaslot.pretrained import reference
        from metaslot.pretrained import reference_layout as layout
        from tests.pretrained.test_reference_roundtrip import _ours, tiny_spec

        model = arguments[arguments.index("--model") + 1]
        real = reference.preset

        def tiny(name: str, data: str, **options: str):
            return attrs.evolve(real(name, data, **options), model=tiny_spec(name))

        self.monkeypatch.setattr(reference, "preset", tiny)
        source = Path(arguments[1])
        if not source.exists():
            spec = reference.as_reference_ran(tiny_spec(model))
            torch.save(layout.to_reference_layout(_ours(spec), spec), source)
        convert_cli.main(arguments)
        folder = Path(arguments[arguments.index("--out") + 1])
        assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file(), where

    def download(self, arguments: list[str], where: str) -> None:
        from metaslot.cli import download as download_cli

        calls: list[tuple[str, Path]] = []

        def record(dataset: str, root: Path, **options: Any) -> list[Any]:
            calls.append((dataset, root))
            return []

        self.monkeypatch.setattr(download_cli, "download_dataset", record)  # the network: parse only
        download_cli.main(arguments)
        assert [call[0] for call in calls] == [arguments[0]], f"{where}: download not called"
        assert isinstance(calls[0][1], Path)


@pytest.mark.slow
def test_documented_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CommandRunner(monkeypatch)
    checked = 0
    for document in DOCUMENTS:
        for number, words in enumerate(bash_commands(document.read_text())):
            runner(words, f"{document.relative_to(ROOT)} command {number} `{shlex.join(words)}`")
            checked += 1
    assert runner.default_job_steps > TINY_STEPS, "README lost the main job or its --resume line"
    assert checked > 10


def markdown_rows(text: str, heading: str) -> list[list[str]]:
    """Cells of the table rows (header and rule excluded) in the section ``## heading``."""
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]


def quoted(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def step_count(text: str) -> int:
    """``"1.5k"`` → 1500, ``"50k"`` → 50000, ``"300"`` → 300."""
    return round(float(text.removesuffix("k")) * (1000 if text.endswith("k") else 1))


def per_dataset(cell: str, datasets: list[str]) -> dict[str, str]:
    values = [value.strip() for value in cell.split("/")]
    values = values * len(datasets) if len(values) == 1 else values
    assert len(values) == len(datasets), f"{cell!r} does not give one value per dataset of {datasets}"
    return dict(zip(datasets, values, strict=True))


def test_readme_presets_table_matches_the_presets() -> None:
    """Slots, steps, batch, lr and what each preset needs, for every --model × --data, read from the code."""
    from metaslot.models.encoders import DinoViTSpec
    from metaslot.models.pipelines import StageTwoSpec
    from metaslot.models.pipelines.vqvae import VQVAESpec
    from metaslot.train.presets import DATASETS, MODELS, preset

    seen: list[tuple[str, str]] = []
    for model_cell, data_cell, _, slots, steps, batch, lr, needs in markdown_rows(
        README.read_text(), "Presets"
    ):
        datasets = quoted(data_cell)
        for model in quoted(model_cell):
            for data, slot_text in per_dataset(slots, datasets).items():
                seen.append((model, data))
                config = preset(model, data)
                where = f"README presets table, {model} × {data}"
                aggregator = getattr(config.model, "aggregator", None)
                assert slot_text == (str(aggregator.num_slots) if aggregator is not None else "–"), where
                assert step_count(steps) == config.loop.steps, where
                assert int(batch) == config.loop.batch_size, where
                assert float(lr) == config.optim.learning_rate, where
                encoder = getattr(config.model, "encoder", None)
                uses_dino = isinstance(encoder, DinoViTSpec) and encoder.pretrained
                assert ("DINO weights" in needs) == uses_dino, where
                stage_two = isinstance(config.model, StageTwoSpec)
                assert ("--vqvae" in needs) == stage_two, where
                from_taesd = isinstance(config.model, VQVAESpec) and config.model.pretrained is not None
                assert ("TAESD weights" in needs) == from_taesd, where
                if stage_two:
                    assert f"c{config.model.vqvae.code_dim}" in needs, where
    expected = sorted((model, data) for model in MODELS for data in DATASETS)
    assert sorted(seen) == expected, "the README presets table must list every --model × --data exactly once"


def test_readme_weights_table_names_the_files_the_code_asks_for() -> None:
    from metaslot.models.encoders.vit import DEFAULT_VIT, KNOWN_VITS, hub_repository

    rows = markdown_rows(README.read_text(), "Pretrained weights, offline")
    names = [quoted(row[0])[0] for row in rows]
    assert sorted(names) == sorted(KNOWN_VITS)
    for row in rows:
        name = quoted(row[0])[0]
        assert f"https://huggingface.co/{hub_repository(name)}/resolve/main/model.safetensors" in row[1], name
        assert ("(default)" in row[0]) == (name == DEFAULT_VIT), name


def test_relative_links_point_at_files() -> None:
    documents = (*DOCUMENTS, *sorted((ROOT / "docs").glob("*.md")))
    for document in documents:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" not in target:
                assert (document.parent / target).exists(), (
                    f"{document.relative_to(ROOT)} links to missing {target}"
                )

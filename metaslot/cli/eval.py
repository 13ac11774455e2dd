"""`python -m cli.eval RUN_OR_CHECKPOINT [--checkpoint last|best] [--data NAME] [flags]`: metrics table,
JSON and pictures.

RUN_OR_CHECKPOINT is a run folder (its last checkpoint; ``--checkpoint best`` for the best validation
score), a ``checkpoints/`` folder, a ``step-*.json`` sidecar, a ``.safetensors`` file or a folder written
by ``save_pretrained`` / ``cli.convert checkpoint`` (report in ``FOLDER/eval-<split>``); it comes first.
The table and ``evaluation.json`` name the checkpoint, its step and the split reported, and for the best
checkpoint the split it was chosen on (``--loop.val-split`` of the run), saying so when that is the split
being reported. The run's ``config.json`` rebuilds
the model and the checkpoint gives every weight (frozen DINO/VQ-VAE included), so no weights file or hub
access is needed; ``--data NAME`` evaluates on another dataset's preset data, at the run's training
resolution unless ``--data.resolution`` says otherwise. Every field of the evaluation config stays
overridable (``--data.root``, ``--data.resolution``, ``--evaluation.split``, ``--evaluation.batch-size``,
``--evaluation.max-batches``, ``--num-workers`` ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import attrs

from metaslot.cli._errors import user_errors
from metaslot.errors import CheckpointError, ConfigError
from metaslot.runtime.device import DeviceChoice, PrecisionChoice


@attrs.frozen
class EvalConfig:
    """What an evaluation of a saved run may change (the model comes from the run)."""

    data: object
    evaluation: object
    device: DeviceChoice = "auto"
    precision: PrecisionChoice = "auto"
    output: Path | None = None
    """Folder for evaluation.json and the PNGs (default: <run>/eval-<checkpoint>-<split>)."""
    num_workers: int = 0


def _load_run_config(run_dir: Path):
    from metaslot.train.config import read_config_file

    path = run_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} has no config.json; pass a run folder written by `python -m cli.train`"
        )
    return read_config_file(path)


def named_data(name: str, trained: object) -> object:
    """The preset data ``name`` at the resolution the run trained at (``trained``, its data spec).

    A model usually reads only the image size it trained at (an autoencoder's broadcast decoder, a
    ViT's position grid), so that, not the dataset's default, is the sensible size to evaluate at;
    ``--data.resolution`` still overrides it. Specs without a ``resolution`` field are left as they are.
    """
    from metaslot.train.presets import data_spec

    spec = data_spec(name)
    resolution = resolution_of(trained)
    if resolution is None or resolution_of(spec) is None:
        return spec
    with attrs.validators.disabled():  # checked once the flags are in (a bad size can still be overridden)
        return attrs.evolve(spec, resolution=resolution)


def resolution_of(data: object) -> int | None:
    """The image side a data spec resizes to, or None for a spec without a ``resolution`` field."""
    if attrs.has(type(data)) and "resolution" in attrs.fields_dict(type(data)):
        return data.resolution  # type: ignore[attr-defined]
    return None


def resolution_note(name: str, used: int, trained: int | None) -> str:
    """The line that says at which resolution ``--data NAME`` is evaluated, and why."""
    if trained is None:
        return f"data: {name} at {used} px (the run's data has no resolution to follow)"
    if used == trained:
        return f"data: {name} at {used} px, the run's training resolution (--data.resolution to change)"
    return f"data: {name} at {used} px from --data.resolution (the run trained at {trained} px)"


def run(argv: list[str], program: str, *, pictures_only: bool) -> None:
    """Evaluate (or only draw pictures of) the checkpoint ``argv`` names, with its flags applied."""
    known, rest = _selector_parser(program).parse_known_args(argv)
    if known.source is None:
        _help_or_usage_error(program, rest)
        return
    from metaslot.pretrained.loading import is_pretrained_folder

    source = Path(known.source)
    if is_pretrained_folder(source):
        refuse_best(source, known.checkpoint)
        config = _load_run_config(source)
        options = _evaluation_options(config, known, rest, program, pictures_only)
        _evaluate_pretrained(config, options, source, pictures_only)
        return
    run_dir, sidecar = chosen_checkpoint(source, known.checkpoint)
    config = _load_run_config(run_dir)
    options = _evaluation_options(config, known, rest, program, pictures_only)
    _evaluate_checkpoint(config, options, run_dir, sidecar, source, pictures_only, known.checkpoint)


def refuse_best(folder: Path, choice: str) -> None:
    if choice == "best":
        raise ConfigError(
            f"--checkpoint best picks among a run folder's checkpoints, but {folder} is a save_pretrained "
            "folder (one model): drop --checkpoint"
        )


def chosen_checkpoint(source: Path, choice: str) -> tuple[Path, Path]:
    """(run folder, sidecar): a run folder's ``last`` or ``best`` checkpoint, or the checkpoint file given."""
    from metaslot.train.checkpoint import resolve_checkpoint

    if choice == "best" and source.is_file():
        raise ConfigError(
            f"--checkpoint best picks among a run folder's checkpoints, but {source} is one checkpoint: "
            "pass the run folder, or drop --checkpoint"
        )
    return resolve_checkpoint(source, "best" if choice == "best" else "last")


def checkpoint_provenance(config, source: Path, sidecar: Path, split: str, step: int):
    """What the report says about the weights: ``best`` (with the split it was chosen on, the run's
    ``--loop.val-split``), ``last`` for a run folder's last checkpoint, else the file name given."""
    from metaslot.eval_settings import Provenance

    name = sidecar.name.removesuffix(".json")
    if name == "best":
        return Provenance(checkpoint="best", split=split, step=step, selected_on=config.loop.val_split)
    return Provenance(checkpoint="last" if source.is_dir() else name, split=split, step=step)


def _selector_parser(program: str) -> argparse.ArgumentParser:
    # prog: argparse would otherwise name the program after sys.argv[0] (the shim's file) in its errors.
    parser = argparse.ArgumentParser(prog=program, add_help=False, allow_abbrev=False)
    parser.add_argument("source", nargs="?")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last")
    parser.add_argument("--data", default=None)
    parser.add_argument("--images", type=int, default=8)
    return parser


def _help_or_usage_error(program: str, rest: list[str]) -> None:
    from metaslot.train.presets import DATASETS

    if any(flag in rest for flag in ("-h", "--help")):
        print(
            f"usage: {program} RUN_OR_CHECKPOINT [--checkpoint {{last,best}}] [--data {{{','.join(DATASETS)}}}] "
            "[--help for the options]"
        )
        return
    raise ConfigError(f"give a run folder or checkpoint: {program} runs/autoencoder-shapes")


def _evaluation_options(
    config, known: argparse.Namespace, rest: list[str], program: str, pictures_only: bool
) -> EvalConfig:
    """The run's data and evaluation settings, ``--data NAME`` applied, then every other flag (tyro)."""
    import tyro

    from metaslot.train.config import rebuild
    from metaslot.train.presets import DATASETS

    data = config.data
    if known.data is not None:
        name = known.data.replace("-", "_")
        if name not in DATASETS:
            raise ConfigError(f"unknown --data {known.data!r}: choose one of {', '.join(DATASETS)}")
        data = named_data(name, config.data)
    evaluation = config.evaluation
    if pictures_only:
        from metaslot.eval.session import batches_for_images

        batch_size = evaluation.batch_size or config.loop.batch_size
        evaluation = attrs.evolve(
            evaluation,
            pictures=known.images,
            max_batches=batches_for_images(max(known.images, 64), batch_size),
        )
    default = EvalConfig(data=data, evaluation=evaluation, device=config.device, precision=config.precision)
    with attrs.validators.disabled():
        options = tyro.cli(
            EvalConfig,
            default=default,
            args=rest,
            prog=f"{program} {known.source}",
            config=(tyro.conf.AvoidSubcommands,),
        )
    options = rebuild(options)
    resolution = resolution_of(options.data)
    if known.data is not None and resolution is not None:
        print(resolution_note(name, resolution, resolution_of(config.data)))
    return options


def _evaluate_checkpoint(
    config,
    options: EvalConfig,
    run_dir: Path,
    sidecar: Path,
    source: Path,
    pictures_only: bool,
    choice: str = "last",
) -> None:
    """Rebuild the run's model, load the checkpoint's weights and write the evaluation next to the run
    (``source``: what the command line named, a run folder or a checkpoint file)."""
    import torch

    from metaslot.pretrained.loading import load_moving_checkpoint
    from metaslot.runtime.device import resolve_device

    device = resolve_device(options.device)
    torch.manual_seed(config.loop.seed)
    # Every weight, frozen backbones included, comes from the checkpoint: no hub, no weights file. A
    # run folder's last checkpoint may be pruned by its training meanwhile: then the new last one.
    moving = source.is_dir()
    pick = (lambda: chosen_checkpoint(source, choice)[1]) if moving else (lambda: sidecar)
    pipeline, document, sidecar = load_moving_checkpoint(config, pick, device)
    spec = options.evaluation
    name = sidecar.name.removesuffix(".json")
    step = int(document["state"]["step"])
    output = options.output or run_dir / f"{'pictures' if pictures_only else 'eval'}-{name}-{spec.split}"
    provenance = checkpoint_provenance(config, source, sidecar, spec.split, step)
    _evaluate_pipeline(
        config, options, pipeline, output, f"{config.name} {name} (step {step}, {spec.split})", provenance
    )


def _evaluate_pretrained(config, options: EvalConfig, folder: Path, pictures_only: bool) -> None:
    """Evaluate a ``save_pretrained`` folder (converted reference weights included); the report goes
    into ``FOLDER/eval-<split>`` unless ``--output`` says otherwise."""
    import torch

    from metaslot.eval_settings import Provenance
    from metaslot.pretrained.loading import load_pretrained_folder, origin_of
    from metaslot.runtime.device import resolve_device

    device = resolve_device(options.device)
    torch.manual_seed(config.loop.seed)
    pipeline = load_pretrained_folder(folder, device)
    origin = origin_of(pipeline)
    step = origin.step if origin is not None else None
    spec = options.evaluation
    output = options.output or folder / f"{'pictures' if pictures_only else 'eval'}-{spec.split}"
    provenance = Provenance(checkpoint=f"pretrained folder {folder.name}", split=spec.split, step=step)
    _evaluate_pipeline(
        config, options, pipeline, output, f"{config.name} ({folder.name}, {spec.split})", provenance
    )


def _evaluate_pipeline(config, options: EvalConfig, pipeline, output: Path, title: str, provenance) -> None:
    """The evaluation of a loaded ``pipeline`` on the options' data, written to ``output``."""
    from metaslot.eval.session import evaluate_and_report
    from metaslot.eval_settings import EvaluationSettings
    from metaslot.runtime import files
    from metaslot.runtime.device import resolve_device, resolve_precision

    device = resolve_device(options.device)
    dtype = resolve_precision(options.precision, device)
    spec = options.evaluation
    dataset = options.data.build(spec.split, False)
    settings = EvaluationSettings(
        spec=spec,
        batch_size=spec.batch_size or config.loop.batch_size,
        device=device,
        dtype=dtype,
        seed=config.loop.seed,
        num_workers=options.num_workers,
    )
    with files.folder_lock(output, "evaluation"):  # two evaluations never mix their files in one folder
        evaluate_and_report(
            pipeline, dataset, settings, output_dir=output, title=title, provenance=provenance
        )


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-eval``)."""
    with user_errors("eval"):
        run(sys.argv[1:] if argv is None else list(argv), "python -m cli.eval", pictures_only=False)


if __name__ == "__main__":
    main()

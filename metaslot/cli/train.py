"""`python -m cli.train --model M --data D [--aggregator A] [any config flag ...]`, and
`python -m cli.train --resume [RUN_FOLDER] [flag ...]`.

Two-step parse: argparse picks the preset from the selectors (``parse_known_args``), then tyro parses
every other flag as an override of that preset's `TrainConfig` (``--help`` after the selectors shows
the preset's values). Flags may come in any order.

``--resume`` continues a run from its own ``config.json``: ``--resume runs/NAME`` names the run folder,
a bare ``--resume`` the folder the other flags name (``--runs-dir``/``--name``, else the preset's). The
other flags are then overrides of the run's config, so nothing needs retyping; the training refuses
those that would change what the run trains (`metaslot.train.run_folder.MAY_CHANGE_ON_RESUME`).
``--resume auto`` is for job scripts that a cluster may requeue: it resumes the run the flags name
when that folder holds a run's ``config.json``, and starts the run otherwise (same command both times).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from metaslot.cli._errors import user_errors

PROGRAM = "python -m cli.train"
SELECTOR_DEFAULTS = {
    "model": "autoencoder",
    "data": "shapes",
    "aggregator": "metaslot",
    "vqvae_variant": "c256",
}


def selector_parser() -> argparse.ArgumentParser:
    """The selectors (default None: not given) and ``--resume [RUN_FOLDER]``; every other flag is tyro's."""
    from metaslot.train.presets import AGGREGATORS, DATASETS, FTDINOSAUR_MODELS, MODELS, VQVAE_VARIANTS

    # prog: argparse would otherwise name the program after sys.argv[0] (the shim's file) in its errors.
    parser = argparse.ArgumentParser(prog=PROGRAM, add_help=False, allow_abbrev=False)
    parser.add_argument(
        "--model",
        help=f"one of {', '.join(MODELS + FTDINOSAUR_MODELS)} (default autoencoder; ftdinosaur-*: coco)",
    )
    parser.add_argument("--data", help=f"one of {', '.join(DATASETS)} (default shapes)")
    parser.add_argument("--aggregator", help=f"one of {', '.join(AGGREGATORS)} (default metaslot)")
    parser.add_argument(
        "--vqvae-variant", help=f"--model vqvae only: {', '.join(VQVAE_VARIANTS)} (c4 for SlotDiffusion)"
    )
    parser.add_argument(
        "--teacher", metavar="RUN", help="--model spot only: the stage-1 run whose masks teach SPOT's stage 2"
    )
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_FOLDER")
    return parser


AUTO = "auto"
"""``--resume auto``: resume the run the flags name if it exists, else start it (for requeued jobs)."""


def existing_run(run_dir: Path) -> bool:
    from metaslot.train.run_folder import CONFIG_FILE

    return (run_dir / CONFIG_FILE).is_file()


def default_selection() -> dict[str, str]:
    """The selectors of the default job (``python -m cli.train`` with none given)."""
    return dict(SELECTOR_DEFAULTS)


def parse_train_arguments(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """(resolved TrainConfig, invocation record) for the command-line arguments ``argv``."""
    known, rest = selector_parser().parse_known_args(argv)
    given = {name: getattr(known, name) for name in SELECTOR_DEFAULTS if getattr(known, name) is not None}
    if known.teacher is not None:
        given["teacher"] = known.teacher
    default = preset_for(given)
    if known.resume == AUTO and not existing_run(named_run_folder(rest, default)):
        known.resume = None  # nothing there yet: the job's first start
    if known.resume is None:
        config = parse_overrides(default, rest, describe_preset({**SELECTOR_DEFAULTS, **given}))
        return config, {"selection": {**SELECTOR_DEFAULTS, **given}, "overrides": list(rest)}
    named = isinstance(known.resume, str) and known.resume != AUTO
    run_dir = Path(known.resume) if named else named_run_folder(rest, default)
    return resumed_config(run_dir, given, default, rest)


def describe_preset(selection: dict[str, str]) -> str:
    from metaslot.train.presets import AGGREGATORS, DATASETS, FTDINOSAUR_MODELS, MODELS, VQVAE_VARIANTS

    model, data = selection["model"], selection["data"]
    return (
        f"Train {model} on {data} with {selection['aggregator']}. Every flag below overrides "
        f"the preset {model}_{data}; selectors: --model {{{','.join(MODELS + FTDINOSAUR_MODELS)}}}, "
        f"--data {{{','.join(DATASETS)}}}, --aggregator {{{','.join(AGGREGATORS)}}}, "
        f"--vqvae-variant {{{','.join(VQVAE_VARIANTS)}}}, --teacher RUN (spot stage 2). --resume [RUN_FOLDER] continues a run from its "
        "config.json (then every flag overrides that); --resume auto resumes the run if it exists and "
        "starts it otherwise (for job scripts a cluster may requeue)."
    )


def parse_overrides(default: Any, rest: list[str], description: str) -> Any:
    """``default`` with the tyro flags ``rest`` applied, validators run afterwards (one-line errors)."""
    import attrs
    import tyro

    from metaslot.train.config import rebuild

    with attrs.validators.disabled():
        parsed = tyro.cli(
            type(default),
            default=default,
            args=rest,
            prog=PROGRAM,
            description=description,
            config=(tyro.conf.AvoidSubcommands,),
        )
    return rebuild(parsed)  # validators run here, outside tyro, so errors are one line


def named_run_folder(rest: list[str], default: Any) -> Path:
    """The run folder a bare ``--resume`` means: ``--runs-dir``/``--name`` among the flags, else the preset's."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--name", default=default.name)
    parser.add_argument("--runs-dir", "--runs_dir", dest="runs_dir", default=default.runs_dir)
    known, _ = parser.parse_known_args(rest)
    return Path(known.runs_dir) / known.name


def resumed_config(
    run_dir: Path, given: dict[str, str], chosen: Any, rest: list[str]
) -> tuple[Any, dict[str, Any]]:
    """The config in ``run_dir/config.json`` with the flags ``rest`` applied, to be resumed there."""
    import json

    import attrs

    from metaslot.errors import ConfigError
    from metaslot.train.config import config_from_json
    from metaslot.train.run_folder import CONFIG_FILE, require_resumable

    if run_dir.name in ("", ".", ".."):
        run_dir = run_dir.resolve()
    require_resumable(run_dir)
    text = (run_dir / CONFIG_FILE).read_text()
    stored = config_from_json(text)
    selection = (json.loads(text).get("invocation") or {}).get("selection") or {}
    refuse_other_selectors(run_dir, given, selection, chosen, stored)
    # --loop.stop-at belongs to the invocation that gave it: a resumed run goes on to --loop.steps.
    loop = attrs.evolve(stored.loop, stop_at=None)
    located = attrs.evolve(stored, name=run_dir.name, runs_dir=run_dir.parent, loop=loop)
    config = parse_overrides(
        located, rest, f"Resume the run {run_dir}; every flag overrides its config.json."
    )
    if config.run_dir != run_dir:
        raise ConfigError(
            f"--resume {run_dir} names the run folder; drop --name/--runs-dir (they point at {config.run_dir})"
        )
    return attrs.evolve(config, resume=True), {"selection": selection, "overrides": list(rest)}


def preset_for(given: dict[str, str]) -> Any:
    from metaslot.train.presets import preset

    selection = {**SELECTOR_DEFAULTS, **given}
    teacher = Path(given["teacher"]) if "teacher" in given else None
    return preset(
        selection["model"], selection["data"], selection["aggregator"], selection["vqvae_variant"], teacher
    )


def refuse_other_selectors(
    run_dir: Path, given: dict[str, str], selection: dict[str, str], chosen: Any, stored: Any
) -> None:
    """Selectors given with ``--resume`` must be the run's own (by its invocation, else by its spec classes)."""
    from metaslot.errors import ConfigError

    for name, value in given.items():
        flag = "--" + name.replace("_", "-")
        if name in selection and selection[name] != value:
            trained = f"trained with {flag} {selection[name]}"
        elif not selection and (type(chosen.model), type(chosen.data)) != (
            type(stored.model),
            type(stored.data),
        ):
            trained = (
                f"whose config.json holds a {type(stored.model).__name__} on {type(stored.data).__name__}"
            )
        else:
            continue
        raise ConfigError(
            f"{flag} {value} does not match run {run_dir}, {trained}; --resume takes the model and data "
            "from the run's config.json: drop the selectors"
        )


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-train``); ``argv`` defaults to ``sys.argv[1:]``."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    with user_errors("train"):
        config, invocation = parse_train_arguments(arguments)
        from metaslot.eval.session import SplitEvaluation
        from metaslot.runtime.distributed import context_from_environment
        from metaslot.train.loop import train

        result = train(config, evaluation=SplitEvaluation(), invocation=invocation)
        # Under torchrun every rank returns here; one summary line is enough (and only rank 0 saved).
        if context_from_environment().is_main:
            print(f"run folder: {result.run_dir} (step {result.step}, checkpoint {result.checkpoint})")


if __name__ == "__main__":
    main()

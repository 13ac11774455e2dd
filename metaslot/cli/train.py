"""`python -m cli.train --model M --data D [--aggregator A] [any config flag ...]`.

Two-step parse: argparse picks the preset from the selectors (``parse_known_args``), then tyro parses
every other flag as an override of that preset's `TrainConfig` (``--help`` after the selectors shows
the preset's values). Flags may come in any order.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from metaslot.cli._errors import user_errors

PROGRAM = "python -m cli.train"


def selector_parser() -> argparse.ArgumentParser:
    from metaslot.train.presets import AGGREGATORS, DATASETS, MODELS, VQVAE_VARIANTS

    # prog: argparse would otherwise name the program after sys.argv[0] (the shim's file) in its errors.
    parser = argparse.ArgumentParser(prog=PROGRAM, add_help=False, allow_abbrev=False)
    parser.add_argument("--model", default="autoencoder", help=f"one of {', '.join(MODELS)}")
    parser.add_argument("--data", default="shapes", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--aggregator", default="metaslot", help=f"one of {', '.join(AGGREGATORS)}")
    parser.add_argument(
        "--vqvae-variant",
        default="c256",
        help=f"--model vqvae only: {', '.join(VQVAE_VARIANTS)} (c4 for SlotDiffusion)",
    )
    return parser


def parse_train_arguments(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """(resolved TrainConfig, invocation record) for the command-line arguments ``argv``."""
    import attrs
    import tyro

    from metaslot.train.config import rebuild
    from metaslot.train.presets import AGGREGATORS, DATASETS, MODELS, VQVAE_VARIANTS, preset

    selection, rest = selector_parser().parse_known_args(argv)
    default = preset(selection.model, selection.data, selection.aggregator, selection.vqvae_variant)
    description = (
        f"Train {selection.model} on {selection.data} with {selection.aggregator}. Every flag below overrides "
        f"the preset {selection.model}_{selection.data}; selectors: --model {{{','.join(MODELS)}}}, "
        f"--data {{{','.join(DATASETS)}}}, --aggregator {{{','.join(AGGREGATORS)}}}, "
        f"--vqvae-variant {{{','.join(VQVAE_VARIANTS)}}}."
    )
    with attrs.validators.disabled():
        parsed = tyro.cli(
            type(default),
            default=default,
            args=rest,
            prog=PROGRAM,
            description=description,
            config=(tyro.conf.AvoidSubcommands,),
        )
    config = rebuild(parsed)  # validators run here, outside tyro, so errors are one line
    invocation = {"selection": vars(selection), "overrides": list(rest)}
    return config, invocation


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

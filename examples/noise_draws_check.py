"""Does MetaSlot learn the same with issue 26's reduced stage-1 noise draws? The shapes study's runs,
trained with stage 1 drawing the full b·n·c feature noise as before (`full_stage_one_draws`).

Stage 1 now draws b·n·k + b·k·c normals with the same joint distribution as the b·n·c it drew
before, but other values, so a run of either kind should differ from the other only as much as seeds
do. Every argument is ``shapes_study.py``'s; the runs go to ``runs/shapes-study-full-draws`` unless
``--runs-dir`` says otherwise (the run names are the study's, so never share its folder):

    python examples/noise_draws_check.py --part main --aggregators metaslot --no-report
    python examples/shapes_study.py --runs-dir runs/shapes-study-full-draws --report-only --output /tmp/full-draws
"""

from __future__ import annotations

import sys

import shapes_study

from metaslot.bench.noise_draws import full_stage_one_draws

RUNS_DIR = "runs/shapes-study-full-draws"


def main(argv: list[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not any(argument.startswith("--runs-dir") for argument in arguments):
        arguments += ["--runs-dir", RUNS_DIR]
    with full_stage_one_draws():
        shapes_study.main(arguments)


if __name__ == "__main__":
    main()

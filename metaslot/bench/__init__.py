"""Speed benchmarks (not timed tests), run through ``python -m cli.bench [aggregators|pipelines|data|all]``.

``timing`` (warm-up, repeats, min/median/max), ``variants`` (fp32/bf16, eager/compiled), ``machine``
(what ran it), and one module per group: ``aggregators``, ``pipelines``, ``data``. Numbers depend on the
machine and on whatever else runs on it; compare ratios measured in one run. See ``docs/benchmarks.md``.
"""

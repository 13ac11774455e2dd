"""Speed benchmarks (not timed tests): ``python -m metaslot.bench.<name> --quick`` prints a table.

Numbers depend on the machine and on whatever else runs on it; compare ratios measured in one run.
"""

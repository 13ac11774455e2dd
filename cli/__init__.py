"""Repository-root shims so that `python -m cli.train` works from a checkout; the code lives in metaslot.cli."""

"""Command-line entry points (tyro). `python -m cli.<name>` and `metaslot-<name>` both land here."""

"""`python -m cli.bench`: see metaslot.cli.bench."""

from metaslot.cli.bench import main

if __name__ == "__main__":
    main()

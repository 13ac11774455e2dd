"""`python -m cli.train`: see metaslot.cli.train."""

from metaslot.cli.train import main

if __name__ == "__main__":
    main()

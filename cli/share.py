"""`python -m cli.share`: see metaslot.cli.share."""

from metaslot.cli.share import main

if __name__ == "__main__":
    main()

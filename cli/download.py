"""`python -m cli.download`: see metaslot.cli.download."""

from metaslot.cli.download import main

if __name__ == "__main__":
    main()

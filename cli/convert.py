"""`python -m cli.convert`: see metaslot.cli.convert."""

from metaslot.cli.convert import main

if __name__ == "__main__":
    main()

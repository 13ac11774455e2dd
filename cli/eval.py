"""`python -m cli.eval`: see metaslot.cli.eval."""

from metaslot.cli.eval import main

if __name__ == "__main__":
    main()

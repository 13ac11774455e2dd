"""`python -m cli.visualize`: see metaslot.cli.visualize."""

from metaslot.cli.visualize import main

if __name__ == "__main__":
    main()

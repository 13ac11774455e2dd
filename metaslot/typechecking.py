"""Whether this process checks shapes at call time (``METASLOT_TYPECHECK=1``), and the package version.

Below every other part, so the ops can read the flag without importing the package facade, which sits
above them (it re-exports from the layers).
"""

from __future__ import annotations

import os

__version__ = "0.1.0"


def typechecking_enabled() -> bool:
    """True when ``METASLOT_TYPECHECK`` asks for the jaxtyping/beartype import hook in this process."""
    return os.environ.get("METASLOT_TYPECHECK", "0") not in ("", "0", "false", "False")

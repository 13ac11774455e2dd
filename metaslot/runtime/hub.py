"""Files from the Hugging Face hub: is one in the local cache, can the hub be reached (one short try)."""

from __future__ import annotations

import socket
import urllib.parse

import attrs

HUB_ATTEMPT_SECONDS = 3.0
"""The one attempt to reach the hub when weights are not in its cache (no retries)."""


@attrs.frozen
class HubFile:
    """A file a spec would download from the hub, and what to do when it cannot be."""

    what: str
    """What the file is, for the message ("TAESD weights")."""
    repo: str
    filename: str
    fix: str


def in_hub_cache(hub_file: HubFile) -> bool:
    import huggingface_hub

    return isinstance(huggingface_hub.try_to_load_from_cache(hub_file.repo, hub_file.filename), str)


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (HF_HUB_OFFLINE, or one connection attempt failed), or None."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "not in the local hub cache, and HF_HUB_OFFLINE is set"
    address = urllib.parse.urlsplit(constants.ENDPOINT)
    port = address.port or (443 if address.scheme == "https" else 80)
    try:
        with socket.create_connection((address.hostname or "", port), timeout=HUB_ATTEMPT_SECONDS):
            return None
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        return f"not in the local hub cache, and {address.hostname} cannot be reached: {reason}"

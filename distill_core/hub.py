"""Reaching the Hugging Face hub only when a user names something on it, and failing fast when offline."""
from __future__ import annotations

import os
import socket

from .errors import OfflineError

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True", "YES", "yes"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def require_online(what: str) -> None:
    """Raise OfflineError at once (not after a long download timeout) when the hub cannot be reached."""
    if not hub_reachable():
        raise OfflineError(f"{what} is not a local folder or file, and this machine is offline (cannot reach "
                           f"{HUB_HOST}); use the built-in default or a local path")

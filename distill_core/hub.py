"""Reaching the Hugging Face hub only when a user names something on it, and failing fast when offline."""
from __future__ import annotations

import os
import socket
import threading

from .errors import OfflineError

HUB_HOST = "huggingface.co"


def offline_by_setting() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within `timeout` seconds, name lookup included.

    socket timeouts do not cover the DNS lookup, which can hang far longer on a machine without network, so
    the attempt runs in a daemon thread and is abandoned at the deadline.
    """
    if offline_by_setting():
        return False
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, name="hub-check", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def require_online(what: str) -> None:
    """Raise OfflineError at once (not after a long download timeout) when the hub cannot be reached."""
    if hub_reachable():
        return
    if offline_by_setting():
        raise OfflineError(f"{what} is not a local folder or file, and this machine is offline (HF_HUB_OFFLINE is "
                           f"set); use the built-in default or a local path, or unset HF_HUB_OFFLINE")
    raise OfflineError(f"{what} is not a local folder or file, and this machine is offline (cannot reach "
                       f"{HUB_HOST}); use the built-in default or a local path, or connect to the internet")

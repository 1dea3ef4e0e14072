"""Audit records: who did what, from where, when. Written to the capped audit stream by the store."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime
from typing import Any

from beatd.messages import format_utc

__all__ = ["audit_record"]


def audit_record(event: str, at: datetime, **details: Any) -> dict[str, Any]:
    """An audit record of ``event`` at ``at`` by this OS user, host and process, plus ``details``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {
        "event": event,
        "at": format_utc(at),
        "user": user,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **details,
    }

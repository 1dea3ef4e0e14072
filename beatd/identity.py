"""Who a daemon process is: its id in Redis (heartbeats, leases, consumer names), host, pid, start."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity:
    """One beat replica or worker process. ``id`` is ``host:pid:random`` so a restarted pid is a new process."""

    id: str
    host: str
    pid: int
    started_at: datetime

    @classmethod
    def here(cls, now: datetime) -> Identity:
        """This process."""
        host, pid = socket.gethostname(), os.getpid()
        return cls(id=f"{host}:{pid}:{os.urandom(3).hex()}", host=host, pid=pid, started_at=now)

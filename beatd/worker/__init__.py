"""Workers: claim fires from queue streams, run them with timeouts, retries and overlap rules, record them."""

from beatd.worker.context import RunContext, previous_fire
from beatd.worker.worker import Worker, needs_restart

__all__ = ["RunContext", "Worker", "needs_restart", "previous_fire"]

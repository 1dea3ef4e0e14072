"""Everything beatd keeps in Redis. The only package that imports redis; Lua comes from ``beatd/store/lua``."""

from beatd.store.base import AUDIT_MAXLEN, StoreError, StoreRejected, StoreUnavailable, connect
from beatd.store.beat import ApplyResult, Corrupt, InFlight, LeaderWrite, Store
from beatd.store.runs import Claim, ClaimRequest, Delivery, Finish, LostRun, RunStore

__all__ = [
    "AUDIT_MAXLEN",
    "ApplyResult",
    "Claim",
    "ClaimRequest",
    "Corrupt",
    "Delivery",
    "Finish",
    "InFlight",
    "LeaderWrite",
    "LostRun",
    "RunStore",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "connect",
]

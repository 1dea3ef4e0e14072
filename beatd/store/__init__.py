"""Everything beatd keeps in Redis. The only package that imports redis; Lua comes from ``beatd/lua``."""

from beatd.store.base import StoreError, StoreRejected, StoreUnavailable, connect
from beatd.store.beat import AUDIT_MAXLEN, ApplyResult, Corrupt, LeaderWrite, Store
from beatd.store.runs import Claim, ClaimRequest, Delivery, Finish, RunStore

__all__ = [
    "AUDIT_MAXLEN",
    "ApplyResult",
    "Claim",
    "ClaimRequest",
    "Corrupt",
    "Delivery",
    "Finish",
    "LeaderWrite",
    "RunStore",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "connect",
]

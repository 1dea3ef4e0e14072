"""Everything beatd keeps in Redis. The only package that imports redis; Lua comes from ``beatd/lua``."""

from beatd.store.base import StoreError, StoreRejected, StoreUnavailable, connect
from beatd.store.beat import AUDIT_MAXLEN, ApplyResult, Op, Store
from beatd.store.runs import Claim, ClaimRequest, Delivery, Finish, LostRun, RunStore

__all__ = [
    "AUDIT_MAXLEN",
    "ApplyResult",
    "Claim",
    "ClaimRequest",
    "Delivery",
    "Finish",
    "LostRun",
    "Op",
    "RunStore",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "connect",
]

"""Python's cyclic garbage collector kept off beatd's large, cycle-free object graphs: a config of 100,000 jobs,
a sync of 1,000,000 runtime jobs, a burst's fires (no other imports: the config loader uses it)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused", "keep_out_of_collections"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector meanwhile (as it was before, after): for work that makes millions
    of objects, none in a cycle (a config of 100,000 jobs built, a sync of 1,000,000, a burst's fires), whose
    collections, each walking every object alive, would cost more than the work."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def keep_out_of_collections(replacing: bool = False) -> None:
    """Move everything alive now (the loaded config) out of the garbage collector's reach, so full
    collections do not rescan it every time: with 100,000 jobs each would stall the loop for seconds.
    Called after loading a config; with ``replacing`` (a reload) the previous config is collected first."""
    if replacing:
        gc.unfreeze()
        gc.collect()
    gc.freeze()

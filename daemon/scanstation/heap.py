"""The objects of start-up kept out of Python's cyclic collector while the daemon runs.

A station builds some 50,000 long-lived objects before it is ready (modules, configuration,
the web application's routes, the decoder's and the store's tables). Python's full
collections walk every one of them each time, with the GIL held: 30–40 ms of the event loop
here, about four times that on a Raspberry Pi, during which no frame is handed on and no
capture acknowledged. ``settled()`` moves them out of the collector's generations once the
station is ready (``gc.freeze``): a full collection then walks only what was made since.
What was frozen goes back to the collector when the station stops, so a process that runs
stations one after another (the tests, a restart with new settings) frees what each left.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled() -> Iterator[int]:
    """Freeze what is alive now (after one collection of today's garbage) for the block's
    length; yields how many objects were frozen."""
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()

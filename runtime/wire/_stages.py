"""The payload of a pipeline's hops: a chunk's items pickled once, in band, by
whoever produced them (the driver for the source, a worker for each stage), so
that a hop's call is plain values the C pickler carries, and a reply relayed
back along the route is bytes passed on untouched."""

from __future__ import annotations

import pickle
from typing import Any

from runtime.wire._codec import dumps

__all__ = ["STAGE_METHOD", "pack_items"]

STAGE_METHOD = "stage"  # the task method of a pipeline's hop
_PLAIN_ITEMS = frozenset({int, float, str, bytes, bool, type(None), complex})


def pack_items(obj: Any, items: list[Any]) -> bytes:
    """``obj`` (``items`` or what holds them) pickled in band: by the C pickler when
    every item is a plain value, else by ``dumps`` (cloudpickle: classes from
    ``__main__`` travel by value). Raises what pickling raises."""
    if all(map(_PLAIN_ITEMS.__contains__, map(type, items))):
        return pickle.dumps(obj, 5)
    return dumps(obj, out_of_band=False)[0]

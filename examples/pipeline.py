"""A three-stage pipeline with backpressure: parse, enrich in actors, format.

``system.pipeline(source, *stages)`` streams a generator of raw log lines
through three stages:

1. ``parse``: a plain function, run in the workers in small chunks;
2. enrich: a ``Stage`` of two ``Enricher`` actors' ``enrich`` methods, so the
   items are spread over both actors (fan-out), each keeping its own state;
3. ``fmt``: a plain function again.

Results come out in source order (``ordered=True``, the default). The chunks
(16 lines, the first stage's ``chunksize``) go from worker to worker: a worker
parses a chunk, calls the enrichers itself and formats what they return, and
only the formatted lines come back to the driver. At most the sum of the
stages' windows (their ``parallelism``: 4 + 8 + 8 chunks) is in flight, so the
driver reads from the source only that far ahead of what the consumer has
taken: the second part takes 5 results from an endless source and counts how
many lines were pulled.

Run it with ``python examples/pipeline.py``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from actors import Actor
from runtime import ActorSystem, Stage

WORKERS = 2
USERS = {1: "ada", 2: "grace", 3: "linus", 4: "barbara"}


def log_lines(pulled: list[int], limit: int | None = None) -> Iterator[str]:
    """Raw lines ``"<seq> <user id> <bytes>"``; counts what is pulled in ``pulled[0]``."""
    for seq in itertools.count() if limit is None else range(limit):
        pulled[0] += 1
        yield f"{seq} {seq % 4 + 1} {(seq * 37) % 1000}"


def parse(line: str) -> dict[str, int]:
    seq, user, size = map(int, line.split())
    return {"seq": seq, "user": user, "bytes": size}


class Enricher(Actor):
    """Adds the user's name, and how many records this actor has enriched."""

    def __init__(self, users: dict[int, str]) -> None:
        self.users = users
        self.seen = 0

    def enrich(self, record: dict[str, int]) -> dict[str, object]:
        self.seen += 1
        return {**record, "name": self.users[record["user"]], "by": os.getpid()}

    def count(self) -> int:
        return self.seen


def fmt(record: dict[str, object]) -> str:
    seq, name, size = record["seq"], record["name"], record["bytes"]
    return f"#{seq:<4} {name:<8} {size:>4} B  (enriched in pid {record['by']})"


def main() -> None:
    with ActorSystem(workers=WORKERS) as system:
        enrichers = [system.spawn(Enricher, USERS, worker=i) for i in range(WORKERS)]
        stages = (
            Stage(parse, parallelism=4, chunksize=16),
            Stage([e.enrich for e in enrichers], parallelism=8),  # fan-out over 2 actors
            fmt,
        )

        pulled = [0]
        results = list(system.pipeline(log_lines(pulled, 1000), *stages))
        for line in results[:4]:
            print(line)
        print("...")
        assert [int(r.split()[0][1:]) for r in results] == list(range(1000)), "out of order"
        shares = [e.count().result(timeout=5) for e in enrichers]
        print(f"{len(results)} records, in source order; enriched per actor: {shares}")

        pulled = [0]
        out = system.pipeline(log_lines(pulled), *stages)  # an endless source
        first = [next(out) for _ in range(5)]
        out.close()  # stops every stage; pending items are dropped
        print(f"took {len(first)} results from an endless source; lines pulled: {pulled[0]}")
        print("  (what the stages' windows hold: 4 + 8 + 8 chunks of 16 lines)")


if __name__ == "__main__":
    main()

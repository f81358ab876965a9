"""Map-reduce word count over files with ``system.map``.

The driver writes a handful of text files into a temporary directory (the text
is generated deterministically from a fixed word list with ``random.Random(0)``),
maps a counting function over their paths in the worker processes (the map
step: each worker reads its files itself, only the paths and the small counts
travel) and merges the per-file counts with ``collections.Counter`` in the
driver (the reduce step). The top 10 words are printed and checked against a
count made in the driver alone.

Run it with ``python examples/word_count.py``.
"""

from __future__ import annotations

import collections
import pathlib
import random
import tempfile
import time

from runtime import ActorSystem

WORKERS = 2
FILES = 16
WORDS_PER_FILE = 50_000
VOCABULARY = [
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "actor", "worker"),
    *("message", "mailbox", "supervisor", "future", "queue", "socket", "pipe", "process"),
    *("thread", "event", "topic", "stream"),
]


def count_words(path: str) -> collections.Counter[str]:
    """The map step: the word counts of one file (runs in a worker)."""
    with open(path, encoding="utf-8") as f:
        return collections.Counter(f.read().split())


def write_corpus(directory: pathlib.Path) -> list[str]:
    rng = random.Random(0)
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]  # a Zipf-like spread
    paths = []
    for i in range(FILES):
        words = rng.choices(VOCABULARY, weights, k=WORDS_PER_FILE)
        lines = (" ".join(words[j : j + 12]) for j in range(0, len(words), 12))
        path = directory / f"part-{i:02d}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_corpus(pathlib.Path(tmp))
        with ActorSystem(workers=WORKERS) as system:
            started = time.perf_counter()
            totals: collections.Counter[str] = collections.Counter()
            for counts in system.map(count_words, paths):  # results in input order
                totals.update(counts)  # the reduce step, in the driver
            elapsed = time.perf_counter() - started

        single = collections.Counter()
        for path in paths:
            single.update(count_words(path))

    assert totals == single, "the map-reduce count differs from the single-process one"
    print(f"{FILES} files, {sum(totals.values()):,} words, {len(totals)} distinct")
    print(f"counted over {WORKERS} worker processes in {elapsed:.2f} s")
    print("top 10 words:")
    for word, n in totals.most_common(10):
        print(f"  {word:<12} {n:>7,}")
    print("matches the single-process count: yes")


if __name__ == "__main__":
    main()

# Setup (once): python3 -m venv .venv && .venv/bin/pip install rapidfuzz numpy
"""Exact-scan peer of `megashtein-gpu bench query`: rapidfuzz's process.cdist.

Usage (megashtein-gpu bench query --python PYTHON runs it for you):

    python tools/bench_rapidfuzz.py --queries Q.txt --choices C.txt [--workers -1]

Both files hold one UTF-8 string per line, separated by "\\n" only (a final newline
does not add a string; empty lines are empty strings); distances count code points,
as megashtein-gpu's exact distance does for CNN-ED models. The timed step is what a
Python user writes for an exhaustive exact search:

    rapidfuzz.process.cdist(queries, choices, scorer=Levenshtein.distance, workers=-1)

(the full query x choice distance matrix, uint8 when every distance fits, else int32),
followed by the row minima. Reading the files is not timed; one untimed warm-up call
on the first query runs first.

Prints one JSON object on one line:
    {"queries": Q, "choices": C, "seconds": T, "queries_per_s": X, "workers": W,
     "threads": N, "rapidfuzz": "<version>", "python": "<version>",
     "min_distances": [smallest distance of each query, in order]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import rapidfuzz
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein


def read_lines(path: str) -> list[str]:
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n"):
        data = data[:-1]
    elif not data:
        return []
    return [line.decode("utf-8") for line in data.split(b"\n")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", required=True)
    ap.add_argument("--choices", required=True)
    ap.add_argument("--workers", type=int, default=-1, help="-1: all CPU threads")
    args = ap.parse_args(argv)

    queries = read_lines(args.queries)
    choices = read_lines(args.choices)
    longest = max((len(s) for s in queries + choices), default=0)
    dtype = np.uint8 if longest < 255 else np.int32

    def scan(qs: list[str]) -> np.ndarray:
        matrix = process.cdist(
            qs, choices, scorer=Levenshtein.distance, dtype=dtype, workers=args.workers
        )
        return matrix.min(axis=1) if len(choices) else np.zeros(len(qs), dtype=dtype)

    scan(queries[:1])
    t0 = time.perf_counter()
    mins = scan(queries)
    elapsed = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "queries": len(queries),
                "choices": len(choices),
                "seconds": elapsed,
                "queries_per_s": len(queries) / elapsed if elapsed > 0 else None,
                "workers": args.workers,
                "threads": os.cpu_count(),
                "rapidfuzz": rapidfuzz.__version__,
                "python": platform.python_version(),
                "min_distances": [int(m) for m in mins],
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

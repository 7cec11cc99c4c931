# Setup (once): python3 -m venv .venv && .venv/bin/pip install rapidfuzz numpy
"""Exact all-pairs peer of `megashtein-gpu bench join`: rapidfuzz's process.cdist.

Usage:

    python tools/bench_join_rapidfuzz.py --strings FILE --max-distance 3 [--sample 2000]

FILE holds one ASCII string per line ("\\n"-separated). The timed step is what a Python
user writes for an exact self-join within distance D:

    rapidfuzz.process.cdist(rows, strings, scorer=Levenshtein.distance,
                            score_cutoff=D, dtype=np.uint8, workers=-1)

run on a seeded sample of --sample rows against all N strings (the full N x N matrix
would not fit in memory for 100k strings), then extrapolated to the N (N - 1) / 2
pairs of the whole join. Prints one JSON object on one line:
    {"strings": N, "sample": S, "max_distance": D, "seconds_sample": T,
     "pairs_per_s": X, "seconds_all_pairs": T * N / S / 2, "workers": W, "threads": N,
     "rapidfuzz": "<version>", "python": "<version>"}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

import numpy as np
import rapidfuzz
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strings", required=True)
    parser.add_argument("--max-distance", type=int, required=True)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=-1)
    args = parser.parse_args()
    with open(args.strings, "rb") as f:
        strings = f.read().decode("ascii").split("\n")
    if strings and strings[-1] == "":
        strings.pop()
    n = len(strings)
    rows = random.Random(args.seed).sample(strings, min(args.sample, n))
    process.cdist(rows[:1], strings[:100], scorer=Levenshtein.distance, workers=args.workers)
    start = time.perf_counter()
    process.cdist(rows, strings, scorer=Levenshtein.distance, score_cutoff=args.max_distance,
                  dtype=np.uint8, workers=args.workers)
    seconds = time.perf_counter() - start
    pairs_per_s = len(rows) * n / seconds
    print(json.dumps({
        "strings": n,
        "sample": len(rows),
        "max_distance": args.max_distance,
        "seconds_sample": seconds,
        "pairs_per_s": pairs_per_s,
        "seconds_all_pairs": n * (n - 1) / 2 / pairs_per_s,
        "workers": args.workers,
        "threads": os.cpu_count(),
        "rapidfuzz": rapidfuzz.__version__,
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()

"""The exact peer for long strings: rapidfuzz.process.cdist(queries, base, Levenshtein,
workers=-1), timed, and each query's exact nearest distance for recall@1.

Usage: .venv/bin/python tools/bench_cdist.py BASE QUERIES [OUT.npy]
(pip install rapidfuzz numpy). Prints the time and pairs/s; OUT.npy gets the
[queries] int32 nearest distances.
"""
import sys
import time

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def main(base_path, queries_path, out=None):
    base, queries = lines(base_path), lines(queries_path)
    t = time.perf_counter()
    d = process.cdist(queries, base, scorer=Levenshtein.distance, workers=-1, dtype=np.int32)
    elapsed = time.perf_counter() - t
    if out:
        np.save(out, d.min(axis=1))
    pairs = len(queries) * len(base)
    print(f"rapidfuzz cdist {len(queries)} x {len(base)}: {elapsed:.2f} s, {pairs / elapsed / 1e6:.2f} M pairs/s")


if __name__ == "__main__":
    main(*sys.argv[1:])

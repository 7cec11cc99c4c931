"""Builds the titles benchmark set: ~50-100k ASCII titles and 1,000 typo'd queries.

Public source (paper titles; the files are not redistributed here):

- papercopilot/paperlists (https://github.com/papercopilot/paperlists, also
  https://huggingface.co/datasets/papercopilot/paperlists): one JSON list per
  conference and year (`<conf>/<conf><year>.json`, records with a "title" field);
  snapshot at commit 33f9884e652f05a768d2f216534d7f1e446a0cf7 (2026-02-23). The
  repository states no licence; the titles are bibliographic metadata of published
  papers. Files of 4 MiB and more were not in the snapshot used (46 of 292 files,
  among them recent ICLR, NeurIPS, ICML and CVPR years).
- dw-dengwei/daily-arXiv-ai-enhanced (https://github.com/dw-dengwei/daily-arXiv-ai-enhanced),
  branch `data`, commit b4c542b7d61bff39f8b999b45b43f62b2bb94f75 (2026-07-01): daily
  arXiv listings, `data/YYYY-MM-DD.jsonl`, one paper per line with a "title" field.
  arXiv releases its article metadata under CC0 1.0 (the repository's code is under
  its own licence; only the titles are used).

Inputs are files or folders (searched recursively, in sorted order) of:
`*.json` (a list of records, or an object whose list values hold records), `*.jsonl`
(one record per line) and `*.txt` (one title per line); a record's title is its
"title" field. Whitespace runs (arXiv titles wrap lines) become one space, the ends
are stripped; titles that are then not printable ASCII (0x20-0x7e), or not
--min-len..--max-len characters long, are dropped; the rest are deduplicated.

Outputs, in OUT:
- titles.txt: up to --n titles (a seeded sample of the distinct titles), sorted, one
  per line, "\\n"-separated;
- title_queries.tsv: --queries lines `query<TAB>source title` (the format
  `megashtein-gpu bench query --pairs` reads: column 1 is the query), each query a
  distinct title of titles.txt with 1-4 seeded random edits (substitution,
  insertion, deletion, adjacent transposition; new characters printable ASCII),
  never itself a string of titles.txt, never starting or ending with a space, and
  distinct from every other query (a transposition costs 2 in plain Levenshtein
  distance and edits can cancel, so the distance to the source is 1-8; an insertion
  can take a query past --max-len);
- title_queries.txt: the queries alone, one per line, in the same order.

Everything is deterministic for given inputs and --seed (Python's `random`).

Command used for the benchmarks (raw/ holds the files exported from the two snapshots):

    python3 tools/make_titles.py raw/paperlists raw/daily-arxiv --out bench
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from typing import Iterable, Iterator

PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]


def source_files(paths: Iterable[str]) -> Iterator[str]:
    """The input files: each path itself, or every .json/.jsonl/.txt below a folder."""
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in files:
                    if name.endswith((".json", ".jsonl", ".txt")):
                        found.append(os.path.join(root, name))
            yield from sorted(found)
        else:
            yield path


def records_titles(value: object) -> Iterator[str]:
    """Titles of a JSON document: a record, a list of records, or an object of lists."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("title"), str):
                yield item["title"]
    elif isinstance(value, dict):
        if isinstance(value.get("title"), str):
            yield value["title"]
        else:
            for item in value.values():
                if isinstance(item, list):
                    yield from records_titles(item)


def raw_titles(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        if path.endswith(".jsonl"):
            for line in f:
                if line.strip():
                    yield from records_titles(json.loads(line))
        elif path.endswith(".json"):
            yield from records_titles(json.load(f))
        else:
            for line in f:
                yield line.rstrip("\n")


def clean(title: str) -> str:
    return " ".join(title.split())


def is_printable_ascii(s: str) -> bool:
    return all(" " <= c <= "~" for c in s)


def typo(title: str, rng: random.Random) -> str:
    """`title` with 1-4 random edits (substitute, insert, delete, adjacent transpose)."""
    s = list(title)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("substitute", "insert", "delete", "transpose"))
        if op == "insert" or len(s) < 2:
            s.insert(rng.randint(0, len(s)), rng.choice(PRINTABLE))
        elif op == "substitute":
            i = rng.randrange(len(s))
            s[i] = rng.choice([c for c in PRINTABLE if c != s[i]])
        elif op == "delete":
            del s[rng.randrange(len(s))]
        else:
            i = rng.randrange(len(s) - 1)
            s[i], s[i + 1] = s[i + 1], s[i]
    return "".join(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", help="raw files or folders (.json, .jsonl, .txt)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, default=100_000, help="most titles kept")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--min-len", type=int, default=40)
    ap.add_argument("--max-len", type=int, default=80)
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args(argv)

    raw = kept_files = 0
    distinct = set()
    for path in source_files(args.sources):
        kept_files += 1
        for title in raw_titles(path):
            raw += 1
            t = clean(title)
            if is_printable_ascii(t) and args.min_len <= len(t) <= args.max_len:
                distinct.add(t)

    rng = random.Random(args.seed)
    pool = sorted(distinct)
    rng.shuffle(pool)
    base = sorted(pool[: args.n])
    base_set = set(base)
    if len(base) < args.queries:
        sys.exit(f"only {len(base)} titles, fewer than --queries {args.queries}")

    qrng = random.Random(args.seed + 1)
    sources = qrng.sample(base, args.queries)
    pairs, seen = [], set()
    for source in sources:
        while True:
            q = typo(source, qrng)
            if q not in base_set and q not in seen and q == q.strip(" "):
                break
        seen.add(q)
        pairs.append((q, source))

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "titles.txt"), "w", encoding="ascii", newline="\n") as f:
        f.writelines(t + "\n" for t in base)
    with open(os.path.join(args.out, "title_queries.tsv"), "w", encoding="ascii", newline="\n") as f:
        f.writelines(f"{q}\t{s}\n" for q, s in pairs)
    with open(os.path.join(args.out, "title_queries.txt"), "w", encoding="ascii", newline="\n") as f:
        f.writelines(q + "\n" for q, _ in pairs)

    print(
        f"{kept_files} files, {raw} raw titles, {len(distinct)} distinct ASCII titles of "
        f"{args.min_len}-{args.max_len} chars; wrote {len(base)} titles and "
        f"{len(pairs)} queries to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

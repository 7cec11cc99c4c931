"""Builds the long-string evaluation sets of the CNN-ED paper's kinds (Dai et al., SIGIR 2020,
section 4.1): 1,000 training strings, 1,000 queries, the rest (capped) the base.

Sets and their public sources (the raw files are not redistributed here):

- abstracts (like the paper's Trec/Enron English text): arXiv abstracts, the "summary"
  field of dw-dengwei/daily-arXiv-ai-enhanced (https://github.com/dw-dengwei/daily-arXiv-ai-enhanced),
  branch `data`, commit b4c542b7d61bff39f8b999b45b43f62b2bb94f75 (2026-07-01), files
  `data/YYYY-MM-DD.jsonl`. arXiv releases its article metadata under CC0 1.0. Whitespace
  runs become one space; abstracts of 100-1,000 characters are kept.
- titles (like DBLP): paper titles from the same arXiv files and from papercopilot/paperlists
  (https://github.com/papercopilot/paperlists, commit 33f9884e652f05a768d2f216534d7f1e446a0cf7;
  no licence stated, bibliographic metadata), read as tools/make_titles.py reads them; no
  length cut except a cap of 1,000 characters (DBLP's longest is 1,627).
- proteins (like UniRef): UniProt reference proteomes as FASTA, from skinnider/CFdb-searches
  (https://github.com/skinnider/CFdb-searches, commit 1f84d40a997bfa8d8808a4e5cab9c201422976f3,
  `data/fasta/filtered/*.fasta.gz`; the repository states no licence, the sequences are
  UniProt's, CC BY 4.0). Sequences of several related species together (E. coli and two
  Salmonella strains share many close homologs, as UniRef clusters do); sequences longer
  than --max-len are dropped (the paper cuts UniRef at 5,000; a shorter cap keeps training
  on a software GPU short).
- dna: the synthetic DNA-like families of tools/make_dna_families.py (its base.txt and
  queries.txt pooled as the source).
- logs (log lines, which the issue names beside text: many near-duplicates, lines of one
  template differing in their fields): the `*_2k.log` samples of logpai/loghub
  (https://github.com/logpai/loghub, commit dd61d0952749ee7963bde24220d1be5ede023033; 16
  systems, 2,000 lines each; free for research or academic work, citing the repository URL).
  Lines of 100-1,000 characters are kept.

Every set: the distinct strings (sorted, then shuffled by random.Random(--seed)); the first
1,000 train.txt, the next 1,000 queries.txt, the next --base base.txt (the paper uses all
the rest; a cap keeps the exact distances of a run within minutes on 2 cores). One string a
line, UTF-8, "\\n"-separated. Deterministic for given inputs and --seed.

Usage (from the repository root):

    python3 tools/make_long_sets.py abstracts RAW/daily-arxiv/data --out OUT/abstracts
    python3 tools/make_long_sets.py titles RAW/paperlists RAW/daily-arxiv --out OUT/titles
    python3 tools/make_long_sets.py proteins RAW/cfdb-fasta --out OUT/proteins --max-len 500
    python3 tools/make_long_sets.py logs RAW/loghub --out OUT/logs
    python3 tools/make_dna_families.py DNA && \\
        python3 tools/make_long_sets.py dna DNA/base.txt DNA/queries.txt --out OUT/dna --base 15000

RAW/daily-arxiv and RAW/paperlists hold the files of the two snapshots (as for
tools/make_titles.py); RAW/cfdb-fasta the 15 `*.fasta.gz` files present in the proteomes snapshot used
(E. coli, two S. typhimurium, P. anserina, Cyanothece, Synechocystis, P. falciparum,
S. cerevisiae, Anabaena, S. elongatus, C. thermophilum, T. brucei, P. knowlesi, P. berghei,
K. stuttgartiensis; the 20 larger proteomes, human among them, were absent from it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
from typing import Iterable, Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_titles import clean, raw_titles, source_files  # noqa: E402

TRAIN = 1000
QUERIES = 1000


def files_below(paths: Iterable[str], suffixes: tuple[str, ...]) -> Iterator[str]:
    """Each path itself, or every file below a folder ending in one of `suffixes`, sorted."""
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if f.endswith(suffixes)]
            yield from sorted(found)
        else:
            yield path


def abstracts(paths: list[str], min_len: int, max_len: int) -> Iterator[str]:
    for path in files_below(paths, (".jsonl",)):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    summary = json.loads(line).get("summary")
                    if isinstance(summary, str):
                        text = clean(summary)
                        if min_len <= len(text) <= max_len:
                            yield text


def titles(paths: list[str], max_len: int) -> Iterator[str]:
    for path in source_files(paths):
        for title in raw_titles(path):
            text = clean(title)
            if 0 < len(text) <= max_len:
                yield text


def fasta_sequences(paths: list[str]) -> Iterator[str]:
    for path in files_below(paths, (".fasta", ".fasta.gz", ".fa", ".fa.gz")):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="ascii", errors="replace") as f:
            parts: list[str] = []
            for line in f:
                if line.startswith(">"):
                    if parts:
                        yield "".join(parts)
                    parts = []
                else:
                    parts.append(line.strip().upper())
            if parts:
                yield "".join(parts)


def log_lines(paths: list[str], min_len: int, max_len: int) -> Iterator[str]:
    for path in files_below(paths, ("_2k.log",)):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                text = line.rstrip("\r\n")
                if min_len <= len(text) <= max_len:
                    yield text


def plain_lines(paths: list[str]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from (line.rstrip("\n") for line in f if line.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", choices=["abstracts", "titles", "proteins", "dna", "logs"])
    ap.add_argument("sources", nargs="+", help="raw files or folders")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--base", type=int, default=10_000, help="most base strings")
    ap.add_argument("--max-len", type=int, default=None,
                    help="longest string kept (default 1000)")
    ap.add_argument("--seed", type=int, default=808)  # the official code's split seed
    args = ap.parse_args(argv)

    max_len = args.max_len or 1000
    if args.set == "abstracts":
        strings = abstracts(args.sources, 100, max_len)
    elif args.set == "titles":
        strings = titles(args.sources, max_len)
    elif args.set == "logs":
        strings = log_lines(args.sources, 100, max_len)
    elif args.set == "proteins":
        strings = (s for s in fasta_sequences(args.sources) if 0 < len(s) <= max_len)
    else:
        strings = plain_lines(args.sources)
    pool = sorted(set(strings))
    if len(pool) < TRAIN + QUERIES + 1:
        sys.exit(f"only {len(pool)} distinct strings, fewer than {TRAIN + QUERIES + 1}")
    random.Random(args.seed).shuffle(pool)
    parts = {
        "train.txt": pool[:TRAIN],
        "queries.txt": pool[TRAIN : TRAIN + QUERIES],
        "base.txt": pool[TRAIN + QUERIES : TRAIN + QUERIES + args.base],
    }
    os.makedirs(args.out, exist_ok=True)
    for name, lines in parts.items():
        with open(os.path.join(args.out, name), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(s + "\n" for s in lines)
    lengths = [len(s) for s in pool]
    alphabet = len(set("".join(pool[: TRAIN + QUERIES + args.base])))
    print(
        f"{args.set}: {len(pool)} distinct strings (mean length "
        f"{sum(lengths) / len(lengths):.0f}, longest {max(lengths)}); wrote "
        + ", ".join(f"{len(v)} to {k}" for k, v in parts.items())
        + f" in {args.out}; alphabet {alphabet}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

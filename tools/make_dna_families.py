"""Write a long-string benchmark set: DNA-like reads in families (no downloads needed).

Usage (from the repo root, any Python 3):

    python3 tools/make_dna_families.py OUT_DIR

OUT_DIR/base.txt: 16,000 strings, each a copy of one of 3,000 random A/C/G/T bases of
450-549 letters with 0-49 random edits (substitution, insertion or deletion);
OUT_DIR/queries.txt: 1,000 strings, each a base.txt string with 5-24 more edits.
Seeded: the same files every run. BENCHMARKS.md ("CNN-ED") measures train, embed and
query on them beside rapidfuzz.process.cdist (tools/bench_cdist.py).
"""
import os
import random
import sys

LETTERS = "ACGT"


def mutate(rng, s, edits):
    s = list(s)
    for _ in range(edits):
        at = rng.randrange(len(s))
        op = rng.randrange(3)
        if op == 0:
            s[at] = rng.choice(LETTERS)
        elif op == 1:
            s.insert(at, rng.choice(LETTERS))
        elif len(s) > 1:
            del s[at]
    return "".join(s)


def main(out_dir):
    rng = random.Random(7)
    bases = ["".join(rng.choice(LETTERS) for _ in range(rng.randrange(450, 550))) for _ in range(3000)]
    base = [mutate(rng, rng.choice(bases), rng.randrange(0, 50)) for _ in range(16000)]
    queries = [mutate(rng, rng.choice(base), rng.randrange(5, 25)) for _ in range(1000)]
    os.makedirs(out_dir, exist_ok=True)
    for name, lines in (("base.txt", base), ("queries.txt", queries)):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")

"""Write a long English near-duplicate set: revisions of real abstracts in families.

Usage (from the repo root, any Python 3):

    python3 tools/make_text_families.py SOURCE.txt OUT_DIR

SOURCE.txt holds one English text a line (BENCHMARKS.md uses the 9,283 arXiv abstracts
that tools/make_long_sets.py writes for its `abstracts` set, all three files pooled). Texts
of at least 400 characters are kept, and 5,000 of them (seeded) are the families' originals.

OUT_DIR/base.txt: 16,000 strings, each an original revised 0-19 times;
OUT_DIR/queries.txt: 1,000 strings, each a base.txt string revised 3-14 more times.

A revision is what editing a document does, drawn at random: a word replaced by another
word of the sources, a word inserted or deleted, two neighbouring words swapped, or a typo
(one character substituted, inserted or deleted inside a word). This is the kind of set the
CNN-ED paper's Trec and Enron collections are (texts of 800-900 characters with near
duplicates), built from public text because those collections are not redistributable.
Seeded: the same files every run. BENCHMARKS.md ("CNN-ED") measures train, query and eval
on them beside rapidfuzz.process.cdist (tools/bench_cdist.py).
"""
import os
import random
import sys

MIN_CHARS = 400
ORIGINALS = 5000
BASE = 16000
QUERIES = 1000
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(rng, word):
    at = rng.randrange(len(word))
    op = rng.randrange(3)
    if op == 0:
        return word[:at] + rng.choice(LETTERS) + word[at + 1 :]
    if op == 1:
        return word[:at] + rng.choice(LETTERS) + word[at:]
    return word[:at] + word[at + 1 :] if len(word) > 1 else word


def revise(rng, text, vocabulary, revisions):
    words = text.split(" ")
    for _ in range(revisions):
        at = rng.randrange(len(words))
        op = rng.randrange(5)
        if op == 0:
            words[at] = rng.choice(vocabulary)
        elif op == 1:
            words.insert(at, rng.choice(vocabulary))
        elif op == 2 and len(words) > 1:
            del words[at]
        elif op == 3 and at + 1 < len(words):
            words[at], words[at + 1] = words[at + 1], words[at]
        else:
            words[at] = typo(rng, words[at]) if words[at] else words[at]
    return " ".join(words)


def main(source, out_dir):
    with open(source, encoding="utf-8") as f:
        texts = sorted({line.rstrip("\n") for line in f if len(line.rstrip("\n")) >= MIN_CHARS})
    if len(texts) < ORIGINALS:
        sys.exit(f"{source}: {len(texts)} texts of {MIN_CHARS}+ characters, {ORIGINALS} needed")
    rng = random.Random(11)
    originals = rng.sample(texts, ORIGINALS)
    vocabulary = sorted({w for t in originals for w in t.split(" ") if w})
    base = [revise(rng, rng.choice(originals), vocabulary, rng.randrange(0, 20)) for _ in range(BASE)]
    queries = [revise(rng, rng.choice(base), vocabulary, rng.randrange(3, 15)) for _ in range(QUERIES)]
    os.makedirs(out_dir, exist_ok=True)
    for name, lines in (("base.txt", base), ("queries.txt", queries)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

# Setup (once): python3 -m venv .venv && .venv/bin/pip install numpy faiss-cpu qdrant-client
"""Runs README.md's export recipe (faiss and Qdrant) on a fresh export and checks it.

Usage: .venv/bin/python tools/check_export_recipe.py [--bin target/release/megashtein-gpu]

Embeds tests/data/words.txt plus a few strings with tabs and backslashes into an index,
exports it into a temporary folder as `export/`, then executes the Python blocks of
README.md that follow a `<!-- recipe: export -->` line, in that folder, and checks what
they leave behind: every string read back equals its source line, and each vector's
nearest neighbour is itself, at estimate 0, in faiss and in Qdrant.
Outside CI: faiss and qdrant-client are large packages.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe_blocks(readme: str) -> list[str]:
    """The ```python blocks that directly follow a `<!-- recipe: export -->` line."""
    pattern = r"<!-- recipe: export -->\s*```python\n(.*?)```"
    return re.findall(pattern, readme, flags=re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "target/release/megashtein-gpu"))
    args = parser.parse_args()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = recipe_blocks(f.read())
    if not blocks:
        print("no recipe blocks found in README.md", file=sys.stderr)
        return 1
    with open(os.path.join(ROOT, "tests/data/words.txt"), encoding="ascii") as f:
        lines = f.read().split("\n")[:-1][:500]
    lines += ["tab\there", "back\\slash", "both\\t\tend\\"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        index = os.path.join(tmp, "corpus.idx")
        subprocess.run([args.bin, "embed", "-i", corpus, "-o", index], check=True)
        subprocess.run([args.bin, "export", "--index", index, "-o", os.path.join(tmp, "export")],
                       check=True)
        scope: dict = {}
        os.chdir(tmp)
        for block in blocks:
            exec(compile(block, "README.md recipe", "exec"), scope)
    strings, vectors, ids, distances = (scope[k] for k in ("strings", "vectors", "ids", "distances"))
    assert strings == lines, "strings.tsv did not read back as the source lines"
    assert vectors.shape == (len(lines), 80), vectors.shape
    assert all(ids[q][0] == q and distances[q][0] == 0 for q in range(len(ids))), (ids, distances)
    hits = scope["hits"]
    assert hits[0].id == 0 and hits[0].score == 0, hits[0]
    print(f"README export recipe: OK ({len(blocks)} blocks, {len(lines)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""Write tests/fixtures/forward.safetensors: the reference forward pass on ~200 strings.

Usage (from the repo root):

    python tools/make_fixture.py [--checkpoint PATH] [--out PATH]

Defaults: the released checkpoint models/reference/megashtein_trained_model.pth
(relative to the repo root) and tests/fixtures/forward.safetensors.

Output format (safetensors):
    tokens     int64   [N, 80]  min(ord(c), 127) of the first 80 chars, 0-padded
    embedding  float32 [N, 80]  eval-mode model output, PyTorch float32 on CPU
    __metadata__:
        strings            json.dumps(list of the N strings), in row order
        checkpoint_sha256  hex SHA-256 of the checkpoint file's bytes
        torch_version      torch.__version__ that computed `embedding`

The string list is fixed by a seeded generator (SEED below) and does not depend on the
torch version; with one CPU thread and deterministic algorithms the embeddings are
reproducible on one machine, and the file is written byte-for-byte reproducibly
(sorted header keys). All strings are pure ASCII (codes 0..127). They cover the
empty string, single characters, exactly 80 / 81 / 200 characters (81 and 200 share
their first 80 chars with an 80-char row, so their embeddings must be identical),
control characters, '\\0' and '\\x7f', tabs, printable random strings of every length
1..80, words, names, sentences and repeated characters.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from megashtein_ref import (  # noqa: E402
    MAX_LEN,
    REPO_ROOT,
    load_model,
    resolve_checkpoint,
    sha256_file,
    tokenize_batch,
)

SEED = 20240611
DEFAULT_OUT = "tests/fixtures/forward.safetensors"


def fixture_strings() -> list[str]:
    rng = random.Random(SEED)
    printable = string.printable  # the reference's training alphabet (100 chars)

    def rand_printable(n: int) -> str:
        return "".join(rng.choice(printable) for _ in range(n))

    def rand_ascii(n: int) -> str:
        return "".join(chr(rng.randrange(128)) for _ in range(n))

    out: list[str] = []
    # empty and single characters (incl. \0, DEL, whitespace, control)
    out += ["", "a", "Z", "0", " ", "~", "\0", "\x7f", "\t", "\n", "\r", "\x01", "\x1b"]
    # exactly 80, 81 and 200 characters; 81/200 extend the 80-char row before them
    s80 = rand_printable(80)
    out += [s80, s80 + "X", s80 + rand_printable(120)]
    s80b = rand_ascii(80)
    out += [s80b, s80b + rand_ascii(1), s80b + rand_ascii(120)]
    out += [rand_printable(81), rand_printable(200), "a" * 80, "a" * 81, "a" * 200]
    # control characters, NUL and DEL inside strings, tabs
    out += [
        "hello\0world",
        "\0\0\0abc",
        "abc\0\0\0",
        "\0" * 80,  # tokenizes like the empty string
        "\0" * 5 + "x",
        "\x7f" * 5,
        "del\x7fchar",
        "tab\tseparated\tvalues",
        "\t\tindented",
        "trailing tab\t",
        "line\r\nend",
        "multi\nline\ntext",
        "\x1b[31mred\x1b[0m",
        "bell\x07ring",
        "".join(chr(c) for c in range(32)),  # all 32 control chars
        "".join(chr(c) for c in range(128)),  # all of ASCII, cut to 0..79
        "".join(chr(c) for c in range(127, -1, -1)),  # all of ASCII, reversed
        "\x0b\x0c vertical tab and form feed",
        "back\\slash and \"quotes\" and 'single'",
    ]
    # random full-range ASCII (0..127) strings
    out += [rand_ascii(n) for n in (1, 3, 7, 16, 33, 50, 64, 79)]
    # printable random strings of every length 1..80
    out += [rand_printable(n) for n in range(1, MAX_LEN + 1)]
    # words
    out += [
        "hello", "world", "hello world", "hello word", "helo world", "the", "fox",
        "receive", "recieve",
        "definitely", "definately", "separate", "seperate", "occurrence", "occurence",
        "kitten", "sitting", "levenshtein", "embedding", "antidisestablishmentarianism",
    ]
    # names
    out += [
        "Smith", "Johnson", "Williams", "Garcia",
        "Rodriguez", "Martinez", "O'Brien", "McDonald", "van der Berg", "Jean-Luc Picard",
        "Ada Lovelace", "Alan Turing",
    ]
    # sentences
    out += [
        "The quick brown fox jumps over the lazy dog.",
        "The quick brown fox jumped over the lazy dogs.",
        "Pack my box with five dozen liquor jugs.",
        "Sphinx of black quartz, judge my vow!",
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
        "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "fn main() { println!(\"Hello, world!\"); }",
        "SELECT * FROM users WHERE name = 'alice';",
        "https://example.com/path?query=1&other=2#frag",
        "user@example.org",
        "1234567890",
        "3.14159265358979323846264338327950288419716939937510",
    ]
    # repeated characters / periodic strings
    out += [
        "aa", "aaaa", "a" * 40, "a" * 79, "b" * 80, " " * 10, " " * 80, "~" * 80,
        "ab" * 40, "abc" * 27, "xyz" * 10, "0" * 33, "\t" * 80, "\x01" * 80,
    ]
    assert all(ord(c) < 128 for s in out for c in s), "fixture strings must be ASCII"
    return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Byte-reproducible safetensors writer: sorted tensor names and metadata keys.
    (safetensors' own save_file emits __metadata__ in hash-map order, so its bytes vary
    between runs.) Layout: u64 LE header size, JSON header padded with spaces to a
    multiple of 8, then the tensors' little-endian C-order bytes in header order."""
    dtypes = {np.dtype("<i8"): "I64", np.dtype("<f4"): "F32"}
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the released checkpoint")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT} (relative to the repo root)")
    args = ap.parse_args(argv)

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    ckpt = resolve_checkpoint(args.checkpoint)
    model = load_model(ckpt).float().eval()
    strings = fixture_strings()
    tokens = tokenize_batch(strings)
    with torch.inference_mode():
        emb = model(tokens)
    assert emb.dtype == torch.float32 and tuple(emb.shape) == (len(strings), 80)

    out = args.out if os.path.isabs(args.out) else os.path.join(REPO_ROOT, args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    write_safetensors(
        tmp,
        {
            "tokens": np.ascontiguousarray(tokens.numpy(), dtype=np.int64),
            "embedding": np.ascontiguousarray(emb.numpy(), dtype=np.float32),
        },
        {
            "strings": json.dumps(strings),
            "checkpoint_sha256": sha256_file(ckpt),
            "torch_version": torch.__version__,
        },
    )
    # read it back through the safetensors library before publishing it
    from safetensors import safe_open
    from safetensors.numpy import load_file

    back = load_file(tmp)
    with safe_open(tmp, "np") as f:
        assert json.loads(f.metadata()["strings"]) == strings
    assert np.array_equal(back["tokens"], tokens.numpy())
    assert np.array_equal(back["embedding"], emb.numpy())
    os.replace(tmp, out)
    print(f"wrote {out}: {len(strings)} strings, {os.path.getsize(out)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

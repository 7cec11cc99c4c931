# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""PyTorch peer of `megashtein-gpu bench embed`: eval-mode forward throughput.

Usage (from the repo root):

    python tools/bench_torch.py [--batch-sizes 1,16,256,4096,65536] [--seconds 2]
                                [--device cpu|cuda] [--threads N] [--checkpoint PATH]

For each batch size B: B random printable strings (Python's string.printable, length
uniform in 1..80, fixed seed) are tokenized once, outside the timing. The timed step
is what a PyTorch user runs per batch: under torch.inference_mode, (for cuda) upload
the int64 token tensor from host memory to the device, then the eval-mode forward of
the released checkpoint in float32; on cuda the step ends with a synchronize, so each
step is counted complete. Outputs stay on the device (no readback). A warm-up (at
least 2 steps and about 20% of the budget, capped at 1 s) runs first and is not
counted; then steps repeat until --seconds have passed (at least 3 steps).

Prints one JSON object per batch size, one line each:
    {"batch": B, "strings_per_s": X, "device": "cpu" | "cuda (<gpu name>)",
     "threads": N, "torch": "<version>", "iters": I, "elapsed_s": T}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from megashtein_ref import MAX_LEN, load_model, tokenize_batch  # noqa: E402

SEED = 12345


def random_strings(n: int, rng: random.Random) -> list[str]:
    p = string.printable
    return ["".join(rng.choice(p) for _ in range(rng.randint(1, MAX_LEN))) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,16,256,4096,65536")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed budget per batch size")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    ap.add_argument("--checkpoint", default=None, help="default: the released checkpoint")
    args = ap.parse_args(argv)

    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if any(b < 1 for b in batch_sizes):
        ap.error("batch sizes must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        dev = torch.device("cuda")
        dev_name = f"cuda ({torch.cuda.get_device_name(dev)})"

        def sync() -> None:
            torch.cuda.synchronize(dev)
    else:
        dev = torch.device("cpu")
        dev_name = "cpu"

        def sync() -> None:
            pass

    model = load_model(args.checkpoint, device=dev)
    rng = random.Random(SEED)

    for b in batch_sizes:
        tokens = tokenize_batch(random_strings(b, rng))  # host int64 [B, 80], not timed

        def step() -> torch.Tensor:
            x = tokens.to(dev) if dev.type != "cpu" else tokens
            y = model(x)
            sync()
            return y

        with torch.inference_mode():
            # warm-up
            warm_budget = min(1.0, 0.2 * args.seconds)
            t0 = time.perf_counter()
            n = 0
            while n < 2 or time.perf_counter() - t0 < warm_budget:
                step()
                n += 1
            # timed
            iters = 0
            t0 = time.perf_counter()
            while True:
                step()
                iters += 1
                elapsed = time.perf_counter() - t0
                if iters >= 3 and elapsed >= args.seconds:
                    break

        print(
            json.dumps(
                {
                    "batch": b,
                    "strings_per_s": b * iters / elapsed,
                    "device": dev_name,
                    "threads": threads,
                    "torch": torch.__version__,
                    "iters": iters,
                    "elapsed_s": round(elapsed, 4),
                }
            ),
            flush=True,
        )
        del tokens
    return 0


if __name__ == "__main__":
    sys.exit(main())

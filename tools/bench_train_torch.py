# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""PyTorch peer of the Rust trainer's throughput: train-mode steps (forward, backward, AdamW).

Usage (from the repo root):

    python tools/bench_train_torch.py [--pairs 64,256,1024] [--seconds 3]
                                      [--device cpu|cuda] [--threads N] [--checkpoint PATH]

Model: the reference architecture (tools/megashtein_ref.py) loaded from the released
checkpoint, in train mode, float32, plus a learned scalar log-scale
log_s = nn.Parameter(log(78.6 / 280)). Optimizer: torch.optim.AdamW over all parameters
(the 17 model tensors and log_s), lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-5,
torch's default implementation for the device.

For each batch size P: P pairs of random printable strings (Python's string.printable,
length uniform in 1..80, fixed seed) and random integer labels 0..80 (they do not affect
speed) are generated and tokenized once, outside the timing: tokens [2P, 80] int64, all
first sides then all second sides. The timed step is a PyTorch user's training step:

    (cuda) upload tokens and labels from host memory to the device
    opt.zero_grad()
    e = model(tokens)                       one forward of 2P rows (BN in train mode)
    d_hat = exp(log_s) * ((e[:P] - e[P:]) ** 2).sum(1)
    loss = PoissonNLLLoss(log_input=False)(d_hat, labels)
    loss.backward(); opt.step()
    (cuda) torch.cuda.synchronize()         so each step is counted complete

A warm-up (at least 2 steps and about 20% of the budget, capped at 1 s) runs first and is
not counted; then steps repeat until --seconds have passed (at least 3 steps). The model
and optimizer carry over from one batch size to the next (training continues).

Prints one JSON object per batch size, one line each:
    {"pairs": P, "pairs_per_s": X, "steps": n, "elapsed_s": T,
     "device": "cpu" | "cuda (<gpu name>)", "threads": N, "torch": "<version>"}
pairs_per_s = P * steps / elapsed_s (each pair is two strings through forward and backward).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import string
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from megashtein_ref import MAX_LEN, load_model, tokenize_batch  # noqa: E402

SEED = 12345
LR = 1e-3
WD = 1e-5
INIT_SCALE = 78.6 / 280


def random_strings(n: int, rng: random.Random) -> list[str]:
    p = string.printable
    return ["".join(rng.choice(p) for _ in range(rng.randint(1, MAX_LEN))) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="64,256,1024", help="comma-separated batch sizes, in pairs")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed budget per batch size")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    ap.add_argument("--checkpoint", default=None, help="default: the released checkpoint")
    args = ap.parse_args(argv)

    sizes = [int(p) for p in args.pairs.split(",") if p.strip()]
    if not sizes or any(p < 1 for p in sizes):
        ap.error("--pairs must be a list of integers >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(SEED)

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

    model = load_model(args.checkpoint, device=dev).float().train()
    log_s = nn.Parameter(torch.tensor(math.log(INIT_SCALE), dtype=torch.float32, device=dev))
    params = list(model.parameters()) + [log_s]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    loss_fn = nn.PoissonNLLLoss(log_input=False)
    rng = random.Random(SEED)

    for p in sizes:
        # data generation and tokenization: not timed
        strings = random_strings(2 * p, rng)
        tokens_host = tokenize_batch(strings)  # [2P, 80] int64: first sides, then second sides
        labels_host = torch.tensor([float(rng.randint(0, MAX_LEN)) for _ in range(p)], dtype=torch.float32)
        del strings

        def step() -> None:
            if dev.type != "cpu":
                tokens = tokens_host.to(dev)
                labels = labels_host.to(dev)
            else:
                tokens, labels = tokens_host, labels_host
            opt.zero_grad()
            e = model(tokens)
            d_hat = torch.exp(log_s) * ((e[:p] - e[p:]) ** 2).sum(1)
            loss = loss_fn(d_hat, labels)
            loss.backward()
            opt.step()
            sync()

        # warm-up
        warm_budget = min(1.0, 0.2 * args.seconds)
        t0 = time.perf_counter()
        n = 0
        while n < 2 or time.perf_counter() - t0 < warm_budget:
            step()
            n += 1
        # timed
        steps = 0
        t0 = time.perf_counter()
        while True:
            step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if steps >= 3 and elapsed >= args.seconds:
                break

        print(
            json.dumps(
                {
                    "pairs": p,
                    "pairs_per_s": p * steps / elapsed,
                    "steps": steps,
                    "elapsed_s": round(elapsed, 4),
                    "device": dev_name,
                    "threads": threads,
                    "torch": torch.__version__,
                }
            ),
            flush=True,
        )
        del tokens_host, labels_host
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch numpy
"""PyTorch peer of `megashtein-gpu bench knn`: exact kNN as a PyTorch user writes it.

Usage (from the repo root):

    python tools/bench_knn_torch.py [--rows 10000,100000,1000000] [--k 10,100]
                                    [--precision f32,f16] [--batch 64] [--dim 80]
                                    [--seconds 2] [--device cpu|cuda] [--threads N]

For each database size N and precision: N random vectors (uniform in [-1, 1), fixed
seed) are put on the device and their squared norms computed once, outside the timing
(what faiss does per database). The timed step searches one batch of B queries:

    q = queries.to(device)                                  # host -> device
    d = (q * q).sum(1, keepdim=True) - 2 * q @ db.T + db_norms   # [B, N]
    values, rows = torch.topk(d, k, dim=1, largest=False)   # sorted, nearest first
    values.cpu(), rows.cpu()                                # readback (+ synchronize)

in the database's dtype (f16 matmuls on the CPU are slow or missing in some builds: a
failing precision prints an "error" line instead). A warm-up (at least 1 step and about
20% of the budget, capped at 1 s) runs first and is not counted; then steps repeat until
--seconds have passed (at least 2 steps). Work is counted as 2 * dim flops per
(query, row) pair (one multiply-add per coordinate), as megashtein-gpu counts it.

Prints one JSON object per (rows, precision, k), one line each:
    {"rows": N, "dim": D, "k": K, "precision": "f32" | "f16", "batch": B,
     "queries_per_s": X, "gflops": G, "device": "cpu" | "cuda (<gpu name>)",
     "threads": T, "torch": "<version>", "iters": I, "elapsed_s": S}
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

SEED = 2024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="10000,100000,1000000")
    ap.add_argument("--k", default="10,100")
    ap.add_argument("--precision", default="f32,f16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=80)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed budget per case")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = ap.parse_args(argv)

    sizes = [int(r) for r in args.rows.split(",") if r.strip()]
    ks = [int(k) for k in args.k.split(",") if k.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    dtypes = {"f32": torch.float32, "f16": torch.float16}
    if any(p not in dtypes for p in precisions):
        ap.error("--precision takes f32 and/or f16")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        dev = torch.device("cuda")
        dev_name = f"cuda ({torch.cuda.get_device_name(dev)})"
    else:
        dev = torch.device("cpu")
        dev_name = "cpu"

    gen = torch.Generator().manual_seed(SEED)
    for n in sizes:
        base = torch.rand(n, args.dim, generator=gen) * 2 - 1
        queries32 = torch.rand(args.batch, args.dim, generator=gen) * 2 - 1
        for p in precisions:
            dtype = dtypes[p]
            db = base.to(device=dev, dtype=dtype)
            db_norms = (db * db).sum(1)[None, :]
            queries = queries32.to(dtype)  # host, as the caller holds them
            for k in ks:
                row = {"rows": n, "dim": args.dim, "k": k, "precision": p, "batch": args.batch}

                def step() -> None:
                    q = queries.to(dev, non_blocking=False)
                    d = (q * q).sum(1, keepdim=True) - 2 * (q @ db.T) + db_norms
                    values, rows = torch.topk(d, min(k, n), dim=1, largest=False)
                    values.cpu()
                    rows.cpu()

                try:
                    with torch.inference_mode():
                        t0 = time.perf_counter()
                        warm = 0
                        while warm < 1 or time.perf_counter() - t0 < min(1.0, 0.2 * args.seconds):
                            step()
                            warm += 1
                        iters = 0
                        t0 = time.perf_counter()
                        while True:
                            step()
                            iters += 1
                            elapsed = time.perf_counter() - t0
                            if iters >= 2 and elapsed >= args.seconds:
                                break
                except RuntimeError as e:  # e.g. no half-precision matmul on this CPU
                    row["error"] = str(e).splitlines()[0]
                    print(json.dumps(row), flush=True)
                    continue
                qps = args.batch * iters / elapsed
                row.update(
                    {
                        "queries_per_s": qps,
                        "gflops": qps * n * 2 * args.dim / 1e9,
                        "device": dev_name,
                        "threads": threads,
                        "torch": torch.__version__,
                        "iters": iters,
                        "elapsed_s": round(elapsed, 4),
                    }
                )
                print(json.dumps(row), flush=True)
            del db, db_norms
    return 0


if __name__ == "__main__":
    sys.exit(main())

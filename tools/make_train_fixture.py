# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""Write tests/fixtures/train_step.safetensors: one reference training step plus two AdamW steps.

Usage (from the repo root):

    python tools/make_train_fixture.py [--checkpoint PATH] [--out PATH]
    python tools/make_train_fixture.py --widths 12,8,232,44 \
        --out tests/fixtures/train_step_widths.safetensors

Defaults: the released checkpoint models/reference/megashtein_trained_model.pth
(relative to the repo root) and tests/fixtures/train_step.safetensors. With --widths
CHAR_DIM,CHANNELS,HIDDEN,DIM the step starts instead from a freshly initialised model of
those widths (torch.manual_seed(SEED)), whose state_dict the fixture holds as init.<name>
(the `train --char-dim --channels --hidden --dim` case; 232 > 200 also takes the Rust
linear layer's split reduction).

The step, exactly as the Rust trainer does it (the released checkpoint or the --widths
model, train mode, float32, CPU, one thread, deterministic algorithms):

    P = 24 pairs (a[i], b[i]) from a seeded generator (SEED below; independent of torch)
    labels[i] = Levenshtein(a[i][:80], b[i][:80])          plain DP, float32
    tokens    = tokenize_batch(a + b)                     [2P, 80]: all a's, then all b's
    e         = model.train()(tokens)                     ONE forward, BN sees 2P rows
    d_hat     = s * ((e[:P] - e[P:]) ** 2).sum(1),        s = 78.6 / 280 (fixed)
    loss      = PoissonNLLLoss(log_input=False, full=False, eps=1e-8, reduction="mean")
              = mean(d_hat - labels * log(d_hat + 1e-8))
    loss.backward()
    AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        step 1 with the gradients above; then every p.grad is set to the SAME
        gradients again and step 2 runs (moment accumulation, bias correction 1 - beta^2).

Output format (safetensors; float32 unless noted):
    tokens                int64 [2P, 80]  first sides (rows 0..P-1), then second sides
    labels                [P]             exact edit distance of the 80-char cuts
    embedding             [2P, dim]       train-mode model output (batch statistics)
    d_hat                 [P]             predicted distances
    loss                  [1]             the Poisson NLL loss
    grad.<param>          per parameter   d loss / d param (17 tensors; names as
                                          model.named_parameters(), e.g. grad.embedding.weight,
                                          grad.conv_layers.0.weight ... grad.fc_layers.3.bias)
    running_mean          [dim]           BN buffers after this one train-mode forward
    running_var           [dim]           (momentum 0.1, unbiased batch variance)
    after.<param>         per parameter   parameters after AdamW step 2
    init.<name>           with --widths   the starting state_dict (float32; no
                                          num_batches_tracked, which is 0)
    __metadata__:
        a, b               json.dumps(list of the P strings), in pair order
        lr, weight_decay, beta1, beta2, eps, adamw_steps, distance_scale, pairs,
        poisson_eps, bn_momentum, num_batches_tracked, seed,
        checkpoint_sha256 (or widths, a JSON object), torch_version, command

Two gradients are mathematically zero and in float32 only round-off (|g| < ~1e-6):
grad.fc_layers.3.bias (BN beta shifts both sides of every pair equally and cancels in
e1 - e2) and grad.fc_layers.2.bias (BN subtracts the batch mean, which absorbs it).
Compare them with an absolute tolerance. AdamW normalises by sqrt(v), so for these two
the after.* values move by up to ~lr * |g| / (|g| + eps) in a round-off-dependent way:
check their after.* by applying AdamW to the fixture's own grad.* (or with tolerance ~lr).

After writing, the file is read back and checked, and a float64 central finite-difference
check of a few gradient entries against autograd is printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shlex
import string
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixture import write_safetensors  # noqa: E402  (byte-reproducible writer)
from megashtein_ref import (  # noqa: E402
    MAX_LEN,
    REPO_ROOT,
    EditDistanceModel,
    load_model,
    resolve_checkpoint,
    sha256_file,
    tokenize_batch,
)

SEED = 20240807
DEFAULT_OUT = "tests/fixtures/train_step.safetensors"
PAIRS = 24
DISTANCE_SCALE = 78.6 / 280
LR = 1e-3
WD = 0.01
BETA1, BETA2 = 0.9, 0.999
ADAM_EPS = 1e-8
POISSON_EPS = 1e-8
ADAMW_STEPS = 2


def levenshtein(a: str, b: str) -> int:
    """Plain O(len(a) * len(b)) dynamic programme, unit costs."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


def fixture_pairs() -> tuple[list[str], list[str]]:
    """P pairs of printable ASCII strings, lengths 0..100, edits of the anchor or unrelated."""
    rng = random.Random(SEED)
    alphabet = string.printable  # 100 chars, no NUL (so no string tokenizes like padding)

    def rand(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    def edit(s: str, k: int) -> str:
        s2 = list(s)
        for _ in range(k):
            op = rng.randrange(3)
            if op == 0 or not s2:  # insert
                s2.insert(rng.randint(0, len(s2)), rng.choice(alphabet))
            elif op == 1:  # delete
                del s2[rng.randrange(len(s2))]
            else:  # substitute
                s2[rng.randrange(len(s2))] = rng.choice(alphabet)
        return "".join(s2)

    a: list[str] = []
    b: list[str] = []

    def add(x: str, y: str) -> None:
        a.append(x)
        b.append(y)

    add("", rand(7))  # the empty string (distance = length of the other)
    add("kitten", "sitting")
    add("a", "b")
    add(rand(3), rand(4))  # short, unrelated
    s = rand(5)
    add(s, edit(s, 1))
    s = rand(12)
    add(s, edit(s, 3))
    s = rand(25)
    add(s, edit(s, 2))
    add(rand(30), rand(18))  # medium, unrelated
    s = rand(40)
    add(s, edit(s, 6))
    s = rand(55)
    add(edit(s, 4), s)
    add(rand(60), rand(64))
    s = rand(70)
    add(s, edit(s, 10))
    s = rand(79)
    add(s, edit(s, 1))
    s = rand(80)
    add(s, edit(s, 5))
    # longer than 80: the label only counts the 80-char cuts
    s = rand(95)
    add(s, s[:80] + rand(12))  # identical cuts, different tails: label 0
    s = rand(100)
    add(s, edit(s, 8))
    s = rand(88)
    add(edit(s, 3), s)
    add(rand(100), rand(85))  # long, unrelated
    s = rand(84)
    add(s, s[:50])  # long vs its prefix
    add(rand(92), rand(9))  # long vs short
    s = rand(20)
    add(s, s[::-1])
    s = rand(33)
    add(s, edit(s, 15))  # heavily edited
    s = rand(81)
    add(s, rand(2) + s)  # shift by two characters
    add("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumped over the lazy dogs.")
    assert len(a) == len(b) == PAIRS, len(a)
    assert all(ord(c) < 128 for s in a + b for c in s)
    return a, b


def labels_for(a: list[str], b: list[str]) -> list[int]:
    labels = [levenshtein(x[:MAX_LEN], y[:MAX_LEN]) for x, y in zip(a, b)]
    try:  # independent cross-check where available
        from rapidfuzz.distance import Levenshtein

        assert labels == [Levenshtein.distance(x[:MAX_LEN], y[:MAX_LEN]) for x, y in zip(a, b)]
    except ImportError:
        pass
    return labels


def forward_loss(model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor):
    p = labels.shape[0]
    e = model(tokens)
    e1, e2 = e[:p], e[p:]
    d_hat = DISTANCE_SCALE * ((e1 - e2) ** 2).sum(1)
    loss = torch.nn.PoissonNLLLoss(log_input=False, full=False, eps=POISSON_EPS, reduction="mean")(d_hat, labels)
    return e, d_hat, loss


def finite_difference_check(start: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor, grads32: dict) -> float:
    """Central differences in float64 vs float64 autograd vs the stored float32 gradient.
    Returns the worst relative error of FD vs float64 autograd over the checked entries."""
    base = copy.deepcopy(start).double().train()
    lab = labels.double()
    m = copy.deepcopy(base)
    _, _, loss = forward_loss(m, tokens, lab)
    loss.backward()
    g64 = {n: p.grad.detach().clone() for n, p in m.named_parameters()}

    def loss_at(name: str, idx: tuple, delta: float) -> float:
        mm = copy.deepcopy(base)  # fresh copy: BN running stats never feed the train-mode loss
        with torch.no_grad():
            dict(mm.named_parameters())[name][idx] += delta
            return forward_loss(mm, tokens, lab)[2].item()

    # fc_layers.3.bias and fc_layers.2.bias have zero gradient (BN cancels them): printed,
    # not counted in the worst error
    zero = {"fc_layers.3.bias", "fc_layers.2.bias"}
    checks = [
        ("fc_layers.3.bias", (0,)),
        ("fc_layers.3.weight", (0,)),
        ("fc_layers.3.weight", (41,)),
        ("fc_layers.2.bias", (5,)),
        # row 5's largest entry (many fc_layers.0 units are dead ReLUs on this batch)
        ("fc_layers.2.weight", (5, int(grads32["fc_layers.2.weight"][5].abs().argmax()))),
        ("fc_layers.0.weight", (17, 3)),
        ("conv_layers.12.bias", (7,)),
        ("conv_layers.0.weight", (3, 10, 1)),
        ("embedding.weight", (ord("e"), 2)),
    ]
    h = 1e-6
    worst = 0.0
    shapes = {n: p.shape for n, p in base.named_parameters()}
    for name, idx in checks:
        idx = tuple(i % n for i, n in zip(idx, shapes[name]))  # narrower widths wrap
        fd = (loss_at(name, idx, h) - loss_at(name, idx, -h)) / (2 * h)
        ad = g64[name][idx].item()
        g32 = grads32[name][idx].item()
        scale = max(abs(fd), abs(ad), 1e-6)
        rel = abs(fd - ad) / scale
        rel32 = abs(g32 - ad) / scale
        if name not in zero:
            worst = max(worst, rel)
        print(
            f"  d loss / d {name}{list(idx)}: finite-diff(f64) {fd:+.9e}  autograd(f64) {ad:+.9e}"
            f"  fixture(f32) {g32:+.9e}  rel fd/ad {rel:.1e}  rel f32/f64 {rel32:.1e}"
        )
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the released checkpoint")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT} (relative to the repo root)")
    ap.add_argument("--widths", default=None, help="CHAR_DIM,CHANNELS,HIDDEN,DIM: start from a fresh model of these widths")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "tools/make_train_fixture.py"] + (sys.argv[1:] if argv is None else list(argv)))

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if args.widths:
        char_dim, channels, hidden, dim = (int(w) for w in args.widths.split(","))
        model = EditDistanceModel(char_dim, channels, hidden, dim).float()
        origin = {"widths": json.dumps({"char_dim": char_dim, "channels": channels, "hidden": hidden, "dim": dim})}
    else:
        ckpt = resolve_checkpoint(args.checkpoint)
        model = load_model(ckpt).float()
        origin = {"checkpoint_sha256": sha256_file(ckpt)}
    start = copy.deepcopy(model)
    model.train()
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == 17, names

    a, b = fixture_pairs()
    labels_int = labels_for(a, b)
    labels = torch.tensor(labels_int, dtype=torch.float32)
    tokens = tokenize_batch(a + b)
    assert tuple(tokens.shape) == (2 * PAIRS, MAX_LEN)

    e, d_hat, loss = forward_loss(model, tokens, labels)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    bn = model.fc_layers[3]
    running_mean = bn.running_mean.detach().clone()
    running_var = bn.running_var.detach().clone()
    num_batches_tracked = int(bn.num_batches_tracked.item())

    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, weight_decay=WD)
    opt.step()  # step 1
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    opt.step()  # step 2, same gradients
    after = {n: p.detach().clone() for n, p in model.named_parameters()}

    tensors: dict[str, np.ndarray] = {
        "tokens": np.ascontiguousarray(tokens.numpy(), dtype=np.int64),
        "labels": labels.numpy().astype(np.float32),
        "embedding": e.detach().numpy().astype(np.float32),
        "d_hat": d_hat.detach().numpy().astype(np.float32),
        "loss": loss.detach().reshape(1).numpy().astype(np.float32),
        "running_mean": running_mean.numpy().astype(np.float32),
        "running_var": running_var.numpy().astype(np.float32),
    }
    for n in names:
        tensors[f"grad.{n}"] = grads[n].numpy().astype(np.float32)
        tensors[f"after.{n}"] = after[n].numpy().astype(np.float32)
    if args.widths:
        for n, v in start.state_dict().items():
            if v.dtype == torch.float32:
                tensors[f"init.{n}"] = v.numpy().astype(np.float32)
    metadata = {
        "a": json.dumps(a),
        "b": json.dumps(b),
        "lr": repr(LR),
        "weight_decay": repr(WD),
        "beta1": repr(BETA1),
        "beta2": repr(BETA2),
        "eps": repr(ADAM_EPS),
        "adamw_steps": str(ADAMW_STEPS),
        "distance_scale": repr(DISTANCE_SCALE),
        "distance_scale_expr": "78.6 / 280",
        "poisson_eps": repr(POISSON_EPS),
        "bn_momentum": "0.1",
        "num_batches_tracked": str(num_batches_tracked),
        "pairs": str(PAIRS),
        "seed": str(SEED),
        "torch_version": torch.__version__,
        **origin,
        "command": command,
    }

    out = args.out if os.path.isabs(args.out) else os.path.join(REPO_ROOT, args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    write_safetensors(tmp, tensors, metadata)

    # read it back through the safetensors library before publishing it
    from safetensors import safe_open
    from safetensors.numpy import load_file

    back = load_file(tmp)
    assert sorted(back) == sorted(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    with safe_open(tmp, "np") as f:
        md = f.metadata()
        assert json.loads(md["a"]) == a and json.loads(md["b"]) == b
        assert md == metadata
    assert all(np.isfinite(v).all() for v in tensors.values())
    # labels really are the DP distances of the cuts; tokens really are a + b
    assert [levenshtein(x[:MAX_LEN], y[:MAX_LEN]) for x, y in zip(json.loads(md["a"]), json.loads(md["b"]))] == labels_int
    assert np.array_equal(back["tokens"], tokenize_batch(a + b).numpy())
    # the AdamW result matches a hand-written AdamW (decoupled decay, bias-corrected)
    ref = copy.deepcopy(start)
    worst_adam = 0.0
    for n, p0 in ref.named_parameters():
        g = grads[n].double()
        w = p0.detach().double()
        m = torch.zeros_like(w)
        v = torch.zeros_like(w)
        for t in range(1, ADAMW_STEPS + 1):
            w = w * (1 - LR * WD)
            m = BETA1 * m + (1 - BETA1) * g
            v = BETA2 * v + (1 - BETA2) * g * g
            mh = m / (1 - BETA1**t)
            vh = v / (1 - BETA2**t)
            w = w - LR * mh / (vh.sqrt() + ADAM_EPS)
        worst_adam = max(worst_adam, (w - torch.from_numpy(back[f"after.{n}"]).double()).abs().max().item())
    print(f"AdamW vs hand-written float64 AdamW: max abs diff {worst_adam:.2e}")
    assert worst_adam < 1e-6, worst_adam

    print("finite-difference check (float64 model copy, h = 1e-6):")
    worst = finite_difference_check(start, tokens, labels, grads)
    print(f"worst relative error finite-diff vs autograd: {worst:.2e}")
    assert worst < 1e-4, worst

    os.replace(tmp, out)
    print(
        f"wrote {out}: {PAIRS} pairs, loss {loss.item():.6f}, labels {labels_int}, "
        f"{len(tensors)} tensors, {os.path.getsize(out)} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

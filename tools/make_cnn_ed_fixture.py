# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""Write the CNN-ED ("cnn-ed-v1") reference fixtures: two model files and their expected outputs.

Usage (from the repo root):

    python tools/make_cnn_ed_fixture.py [--out-dir DIR]

Default DIR: tests/fixtures. Writes DIR/cnn_ed_dna.safetensors, DIR/cnn_ed_text.safetensors,
DIR/cnn_ed_uniref.safetensors and DIR/cnn_ed_cases.json; running it twice gives
byte-identical files.

The model (CNN-ED, Dai et al. SIGIR 2020; the official code's DBLPCNN with its default
`--mtc False` per-character layout, generalised in C, M, L and dim; the code is
github.com/xinyandai/string-embed, networks.py and datasets.py):

    alphabet  list of code points, id = position; a string is cut to its first M code points
    X         [B, C, M] float, X[b, c, l] = 1 iff l < len(s_b) and s_b[l] == alphabet[c]
              (a code point outside the alphabet gives an all-zero column, like padding)
    h         X.view(B*C, 1, M)
    L times   h = AvgPool1d(2)(Conv1d(cin, 8, 3, stride 1, padding 1, bias=False)(h))
              (cin 1 for the first conv, 8 after; floor mode; no activation, except a
              ReLU after the pools of the blocks in R, 1-based, for the uniref model:
              the official UnirefCNN has one after blocks 3, 6 and 9 of 12)
    y         Linear(C*8*Lf, dim)(h.view(B, C*8*Lf)),  Lf = M >> L,
              flatten index c*(8*Lf) + ch*Lf + pos
    init      PyTorch defaults after torch.manual_seed(SEED_*); weights are float32, every
              reference value is computed from those weights in float64 and stored as float32.

Model file (safetensors, all float32 little endian, header keys sorted, written by hand
because safetensors' save_file emits __metadata__ in hash-map order):
    conv.{i}.weight  [8, cin, 3]      i = 0..L-1, cin = 1 for i = 0 else 8
    fc.weight        [dim, C*8*Lf]
    fc.bias          [dim]
    __metadata__ (all strings):
        megashtein.arch                "cnn-ed-v1"
        megashtein.cnn_ed.alphabet     JSON array of the code points as integers, "[71,65,...]"
        megashtein.cnn_ed.max_len      M
        megashtein.cnn_ed.layers       L
        megashtein.cnn_ed.channels     "8"
        megashtein.cnn_ed.dim          dim
        megashtein.cnn_ed.relu_after   JSON array R, "[1,3,5]" (only when R is not empty)
        megashtein.estimate_slope      fixed test value (round-trip only)
        megashtein.estimate_intercept  fixed test value (round-trip only)

The two models:
    dna   alphabet = first-appearance order of a seeded random DNA training set (not ACGT
          order), C = 4, M = 38, L = 5 (Lf = 1), dim = 128
    text  C = 37 code points in a fixed unsorted order, incl. 'é', 'ß', 'ñ', '中', '😀'
          (U+1F600), M = 100, L = 4 (Lf = 6, flat = 1776), dim = 32
    uniref  alphabet = first-appearance order of seeded random protein-like strings over
          the 20 amino acids, C = 20, M = 64, L = 6 (Lf = 1), dim = 64, R = [1, 3, 5]
          (a ReLU after the first block too, and after the last)

cnn_ed_cases.json (UTF-8; floats are float32 values written as the exact decimal of the f32):
    {"dna":  {"model": "cnn_ed_dna.safetensors", "strings": [...], "embeddings": [[dim]...],
              "step": {...} as for text},
     "text": {"model": "cnn_ed_text.safetensors", "strings": [...], "embeddings": [[dim]...],
              "step": {"triplets": [[a, p, n], ...]    n = 6 index triples into "strings"
                       "targets":  [[t_ap, t_an, t_pn], ...]  Levenshtein over code points of
                                   the full (uncut) strings / ed_unit (printed), ed_unit =
                                   mean off-diagonal ED / mean off-diagonal embedding
                                   distance, 3 significant digits (ED / avgD would be ~1,
                                   far above the untrained model's ~1e-3 distances, and
                                   make every hinge active); positive triplets not farther
                                   (ED(a,p) <= ED(a,n)), as the official sampler swaps
                       "lambda": 10.0, "rho": 1.0,
                       "loss": float,
                       "grads": {tensor name: flat row-major list, every tensor}}}}
The step is one forward over ONE batch of 3n strings (anchors, positives, negatives), the
official HEAD loss (networks.py:424-444), d = Euclidean norm (not squared):
    R = relu(d_ap - d_an + t_an - t_ap)
    S = sqrt((d_ap - t_ap)^2 + (d_an - t_an)^2 + (d_pn - t_pn)^2)
    loss = mean(lambda * R + rho * S)
and its gradients by float64 autograd. The triplets are picked (seeded) so that three hinges
are active and three are not, each with a clear margin (|h| >= HINGE_MARGIN times the mean
pair distance).

Notes for tests. At PyTorch's default init the input-dependent part of an embedding is small
next to fc.bias (text: |e - bias| 4e-4..8e-3 vs |e| ~ 0.077; dna: up to 0.08 vs ~ 1.17), so
compare with an absolute tolerance well below that (or compare e - fc.bias). The fc.bias
gradient is 0 in exact arithmetic (da + dp + dn = 0 for every triplet: the loss sees only
differences), so its stored values are float64 rounding noise (~1e-16): use an absolute tolerance.

Self-checks: the files are read back with the safetensors library; the embeddings are
recomputed from the loaded tensors by an independent numpy implementation; the gradient
with respect to the embeddings is checked against the closed form of spec section 6.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

import numpy as np
import torch
from torch import nn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = "tests/fixtures"
CHANNELS = 8
SEED_DNA_DATA = 20260101
SEED_DNA_MODEL = 1101
SEED_TEXT_DATA = 20260202
SEED_TEXT_MODEL = 2202
SEED_UNIREF_DATA = 20260303
SEED_UNIREF_MODEL = 3303
SEED_TRIPLETS = 3303
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
N_TRIPLETS = 6
LAMBDA = 10.0
RHO = 1.0
HINGE_MARGIN = 0.05  # |h| >= this times the mean pair distance: float32 rounding cannot flip a hinge
MIN_DIST = 1e-5  # no triplet pair with (near) identical embeddings: the norm's gradient is 0/0

# 37 code points, fixed unsorted order; not in it: q, x, z, j, upper case but T/S, 'ï', 'ö', '文', ...
TEXT_ALPHABET = list("et aoinsrhl中dcuémfpgwyb😀ßvk.,TS'012ñ-")


class CnnEd(nn.Module):
    def __init__(self, c: int, m: int, layers: int, dim: int, relu_after=()):
        super().__init__()
        self.c, self.m, self.layers, self.relu_after = c, m, layers, tuple(relu_after)
        self.lf = m >> layers
        assert self.lf >= 1, "M too short for L pools"
        self.conv = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else CHANNELS, CHANNELS, 3, stride=1, padding=1, bias=False) for i in range(layers)
        )
        self.pool = nn.AvgPool1d(2)
        self.fc = nn.Linear(c * CHANNELS * self.lf, dim)

    def forward(self, x):  # x: [B, C, M]
        b = x.shape[0]
        h = x.reshape(b * self.c, 1, self.m)
        for i, conv in enumerate(self.conv):
            h = self.pool(conv(h))
            if i + 1 in self.relu_after:
                h = torch.relu(h)
        return self.fc(h.reshape(b, self.c * CHANNELS * self.lf))


def one_hot(strings: list[str], alphabet: list[str], m: int) -> torch.Tensor:
    ids = {ch: i for i, ch in enumerate(alphabet)}
    x = torch.zeros(len(strings), len(alphabet), m, dtype=torch.float64)
    for b, s in enumerate(strings):
        for l, ch in enumerate(s[:m]):
            if ch in ids:
                x[b, ids[ch], l] = 1.0
    return x


def numpy_forward(tensors: dict[str, np.ndarray], strings: list[str], alphabet: list[int], m: int, layers: int,
                  relu_after=()):
    """Independent float64 reimplementation from the loaded file's tensors."""
    c = len(alphabet)
    ids = {cp: i for i, cp in enumerate(alphabet)}
    out = []
    for s in strings:
        x = np.zeros((c, 1, m))  # per character: one 1-channel signal
        for l, ch in enumerate(s[:m]):
            if ord(ch) in ids:
                x[ids[ord(ch)], 0, l] = 1.0
        h = x
        for i in range(layers):
            w = tensors[f"conv.{i}.weight"].astype(np.float64)  # [8, cin, 3]
            n = h.shape[2]
            hp = np.pad(h, ((0, 0), (0, 0), (1, 1)))
            y = np.zeros((c, CHANNELS, n))
            for t in range(3):
                y += np.einsum("oi,cil->col", w[:, :, t], hp[:, :, t:t + n])
            n2 = n // 2
            h = 0.5 * (y[:, :, 0:2 * n2:2] + y[:, :, 1:2 * n2:2])
            if i + 1 in relu_after:
                h = np.maximum(h, 0.0)
        flat = h.reshape(-1)
        out.append(tensors["fc.weight"].astype(np.float64) @ flat + tensors["fc.bias"].astype(np.float64))
    return np.array(out)


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def triplet_loss(e, t, n, lam, rho):
    a, p, q = e[:n], e[n:2 * n], e[2 * n:]
    d_ap = torch.norm(a - p, dim=1)
    d_an = torch.norm(a - q, dim=1)
    d_pn = torch.norm(p - q, dim=1)
    h = d_ap - d_an + (t[:, 1] - t[:, 0])
    r = torch.relu(h)
    s = torch.sqrt((d_ap - t[:, 0]) ** 2 + (d_an - t[:, 1]) ** 2 + (d_pn - t[:, 2]) ** 2)
    return (lam * r + rho * s).mean(), h


def closed_form_de(e, t, n, lam, rho):
    """d loss / d e from spec section 6 (numpy float64)."""
    a, p, q = e[:n], e[n:2 * n], e[2 * n:]
    u, v, w = a - p, a - q, p - q
    d_ap, d_an, d_pn = (np.linalg.norm(z, axis=1) for z in (u, v, w))
    e1, e2, e3 = d_ap - t[:, 0], d_an - t[:, 1], d_pn - t[:, 2]
    h = d_ap - d_an + t[:, 1] - t[:, 0]
    s = np.sqrt(e1 ** 2 + e2 ** 2 + e3 ** 2)
    act = (h > 0).astype(np.float64)
    g_ap = (lam * act + rho * e1 / s) / n
    g_an = (-lam * act + rho * e2 / s) / n
    g_pn = (rho * e3 / s) / n
    uh, vh, wh = u / d_ap[:, None], v / d_an[:, None], w / d_pn[:, None]
    da = g_ap[:, None] * uh + g_an[:, None] * vh
    dp = -g_ap[:, None] * uh + g_pn[:, None] * wh
    dq = -g_an[:, None] * vh - g_pn[:, None] * wh
    return np.concatenate([da, dp, dq])


def f32(x) -> float:
    return float(np.float32(x))


def f32_list(a) -> list:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        return [f32(x) for x in a]
    return [f32_list(r) for r in a]


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Byte-reproducible safetensors writer (as tools/make_fixture.py): sorted tensor names and
    metadata keys; u64 LE header size, JSON header padded with spaces to a multiple of 8, then
    the tensors' little-endian C-order float32 bytes in header order."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line; lists of numbers / strings inline."""
    pad = "  " * indent
    if isinstance(obj, dict):
        items = [f'{pad}  {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], list):
        return "[\n" + ",\n".join(f"{pad}  {dumps(v, indent + 1)}" for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def build_model(seed: int, alphabet: list[str], m: int, layers: int, dim: int, relu_after=()) -> CnnEd:
    torch.manual_seed(seed)
    return CnnEd(len(alphabet), m, layers, dim, relu_after)  # float32 weights, PyTorch default init


def model_file(model: CnnEd, alphabet, m, layers, dim, slope, intercept):
    tensors = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    meta = {
        "megashtein.arch": "cnn-ed-v1",
        "megashtein.cnn_ed.alphabet": json.dumps([ord(ch) for ch in alphabet], separators=(",", ":")),
        "megashtein.cnn_ed.max_len": str(m),
        "megashtein.cnn_ed.layers": str(layers),
        "megashtein.cnn_ed.channels": str(CHANNELS),
        "megashtein.cnn_ed.dim": str(dim),
        "megashtein.estimate_slope": slope,
        "megashtein.estimate_intercept": intercept,
    }
    if model.relu_after:
        meta["megashtein.cnn_ed.relu_after"] = json.dumps(list(model.relu_after), separators=(",", ":"))
    return tensors, meta


def embed64(model: CnnEd, strings, alphabet, m):
    m64 = CnnEd(model.c, model.m, model.layers, model.fc.out_features, model.relu_after).double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    with torch.no_grad():
        return m64(one_hot(strings, alphabet, m)).numpy(), m64


def dna_case():
    rng = random.Random(SEED_DNA_DATA)
    train = ["".join(rng.choice("ACGT") for _ in range(rng.randint(20, 38))) for _ in range(40)]
    alphabet = []
    for s in train:
        for ch in s:
            if ch not in alphabet:
                alphabet.append(ch)
    assert len(alphabet) == 4 and alphabet != list("ACGT"), alphabet
    m, layers, dim = 38, 5, 128
    strings = [
        "",                      # empty: bias only
        "G",                     # length 1
        "TAC",                   # odd
        train[0][:17],           # odd
        train[1][:37] if len(train[1]) >= 37 else (train[1] * 2)[:37],  # M - 1
        (train[2] * 2)[:38],     # exactly M
        (train[3] * 3)[:45],     # longer than M: cut to the first 38
        "ACGTNNACGTRYAC",        # 'N', 'R', 'Y' outside the alphabet: zero columns
        "acgt",                  # all outside the alphabet: same embedding as ""
        "GATTACA" * 4,           # 28
    ]
    assert len(strings[4]) == 37 and len(strings[5]) == m and len(strings[6]) > m
    model = build_model(SEED_DNA_MODEL, alphabet, m, layers, dim)
    return alphabet, m, layers, dim, strings, model


def text_case():
    alphabet = TEXT_ALPHABET
    assert len(alphabet) == 37 and len(set(alphabet)) == 37 and alphabet != sorted(alphabet)
    assert {"é", "ß", "中", "😀"} <= set(alphabet)
    m, layers, dim = 100, 4, 32
    rng = random.Random(SEED_TEXT_DATA)
    pool = alphabet + list("qxzjQ文ïö")  # some outside the alphabet
    rand = lambda k: "".join(rng.choice(pool) for _ in range(k))
    long100 = rand(100)
    strings = [
        "",                                  # 0 empty
        "é",                                 # 1 length 1, non-ASCII
        "straße",                            # 2
        "中😀中",                             # 3 odd, CJK + astral
        "the little brown fox",              # 4 'x' outside
        "naïve café, señor 😀",              # 5 'ï' outside
        "Zebra jazz quiz",                   # 6 'Z', 'z', 'j', 'q' outside
        "ⓧⓨ文",                              # 7 all outside: same embedding as ""
        rand(99),                            # 8 M - 1
        long100,                             # 9 exactly M
        long100 + rand(37),                  # 10 longer than M: same first 100 as #9
        "the little brown fax",              # 11 near #4
        "señorita 😀 straße 中",              # 12
        rand(51),                            # 13 odd
    ]
    assert len(strings[9]) == m and len(strings[10]) > m and len(strings[8]) == 99
    model = build_model(SEED_TEXT_MODEL, alphabet, m, layers, dim)
    return alphabet, m, layers, dim, strings, model


def uniref_case():
    rng = random.Random(SEED_UNIREF_DATA)
    train = ["".join(rng.choice(AMINO_ACIDS) for _ in range(rng.randint(30, 64))) for _ in range(40)]
    alphabet = []
    for s in train:
        for ch in s:
            if ch not in alphabet:
                alphabet.append(ch)
    assert sorted(alphabet) == sorted(AMINO_ACIDS) and alphabet != list(AMINO_ACIDS), alphabet
    m, layers, dim = 64, 6, 64
    strings = [
        "",                      # empty: bias only
        "M",                     # length 1
        train[0][:23],           # odd
        train[1][:41],           # odd
        (train[2] * 3)[:63],     # M - 1
        (train[3] * 3)[:64],     # exactly M
        (train[4] * 3)[:80],     # longer than M: cut to the first 64
        "MKTAYIAKQRQISFVKSHFSRQ",  # a real protein's start
        "MKTAYIAKQRXISFVKSHFSRQ",  # 'X' (unknown residue) outside the alphabet
        "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
        train[5],
        train[6][:31],
    ]
    assert len(strings[4]) == 63 and len(strings[5]) == m and len(strings[6]) > m
    model = build_model(SEED_UNIREF_MODEL, alphabet, m, layers, dim, relu_after=(1, 3, 5))
    return alphabet, m, layers, dim, strings, model


def pick_triplets(strings, emb):
    k = len(strings)
    ed = np.array([[levenshtein(a, b) for b in strings] for a in strings], dtype=np.float64)
    dist = np.linalg.norm(emb[:, None, :] - emb[None, :, :], axis=2)
    # At PyTorch's default init the string-dependent part of an embedding is small (distances
    # ~1e-3), so ED / avgD (~1) would make every hinge active. Scale ED to the embedding
    # distances instead (a least-squares-free "fit": ratio of the off-diagonal means), rounded.
    off = ~np.eye(k, dtype=bool)
    ed_unit = float(f"{ed[off].mean() / dist[off].mean():.3g}")
    margin = HINGE_MARGIN * dist[off].mean()
    active, inactive = [], []
    for a in range(k):
        for p in range(k):
            for q in range(k):
                if len({a, p, q}) < 3 or min(dist[a, p], dist[a, q], dist[p, q]) < MIN_DIST:
                    continue
                if ed[a, p] > ed[a, q]:  # the official sampler's swap: positive not farther
                    continue
                t = (ed[a, p] / ed_unit, ed[a, q] / ed_unit, ed[p, q] / ed_unit)
                h = dist[a, p] - dist[a, q] + t[1] - t[0]
                if h >= margin:
                    active.append((a, p, q))
                elif h <= -margin:
                    inactive.append((a, p, q))
    rng = random.Random(SEED_TRIPLETS)
    half = N_TRIPLETS // 2
    act, ina = rng.sample(active, half), rng.sample(inactive, N_TRIPLETS - half)
    triplets = [x for pair in zip(act, ina) for x in pair]
    # Targets as stored (float32), so the Rust side and this reference use the same numbers.
    targets = [[f32(ed[a, p] / ed_unit), f32(ed[a, q] / ed_unit), f32(ed[p, q] / ed_unit)] for a, p, q in triplets]
    return triplets, targets, ed_unit, margin, len(active), len(inactive)


def train_step(model64: CnnEd, strings, alphabet, m, triplets, targets, margin):
    n = len(triplets)
    batch = [strings[a] for a, _, _ in triplets] + [strings[p] for _, p, _ in triplets] + \
            [strings[q] for _, _, q in triplets]
    model64.zero_grad()
    e = model64(one_hot(batch, alphabet, m))
    e.retain_grad()
    t = torch.tensor(targets, dtype=torch.float64)
    loss, h = triplet_loss(e, t, n, LAMBDA, RHO)
    loss.backward()
    de_ref = closed_form_de(e.detach().numpy(), t.numpy(), n, LAMBDA, RHO)
    assert np.allclose(e.grad.numpy(), de_ref, rtol=1e-10, atol=1e-13), "autograd vs closed form"
    h = h.detach().numpy()
    for i, (tr, hi) in enumerate(zip(triplets, h)):
        print(f"  triplet {i} {tr}: h = {hi:+.4f} -> hinge {'ACTIVE' if hi > 0 else 'inactive'}")
    assert (h > 0).any() and (h <= 0).any() and np.abs(h).min() >= margin
    grads = {k: v.grad.detach().numpy() for k, v in model64.named_parameters()}
    return loss.item(), grads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT_DIR, help=f"default: {DEFAULT_OUT_DIR} (relative to the repo root)")
    args = ap.parse_args(argv)
    out_dir = args.out_dir if os.path.isabs(args.out_dir) else os.path.join(REPO_ROOT, args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    from safetensors import safe_open
    from safetensors.numpy import load_file

    cases = {}
    for name, make, slope, intercept in [
        ("dna", dna_case, "7.5", "0.25"),
        ("text", text_case, "12.125", "-0.5"),
        ("uniref", uniref_case, "9.5", "0.125"),
    ]:
        alphabet, m, layers, dim, strings, model = make()
        fname = f"cnn_ed_{name}.safetensors"
        path = os.path.join(out_dir, fname)
        tensors, meta = model_file(model, alphabet, m, layers, dim, slope, intercept)
        write_safetensors(path, tensors, meta)

        emb, model64 = embed64(model, strings, alphabet, m)
        # read back through the safetensors library, recompute independently
        back = load_file(path)
        with safe_open(path, "np") as f:
            assert f.metadata() == meta
        assert sorted(back) == sorted(tensors) and all(np.array_equal(back[k], tensors[k]) for k in back)
        alpha_back = json.loads(meta["megashtein.cnn_ed.alphabet"])
        emb_np = numpy_forward(back, strings, alpha_back, m, layers, model.relu_after)
        assert np.allclose(emb_np, emb, rtol=1e-12, atol=1e-14), np.abs(emb_np - emb).max()
        # cut and unseen characters behave as specified
        if name == "dna":
            assert np.array_equal(emb[8], emb[0]) and np.allclose(emb[0], back["fc.bias"])
        elif name == "uniref":
            assert np.allclose(emb[0], back["fc.bias"]) and not np.array_equal(emb[7], emb[8])
        else:
            assert np.array_equal(emb[7], emb[0]) and np.array_equal(emb[9], emb[10])

        case = {"model": fname, "strings": strings, "embeddings": f32_list(emb)}
        print(f"{name}: alphabet {''.join(alphabet)!r} C={len(alphabet)} M={m} L={layers} "
              f"Lf={m >> layers} dim={dim}, {len(strings)} strings, |e| {np.linalg.norm(emb, axis=1).round(3)}")
        # Both models' steps: dna's head (fan_in 32) is one the GPU trainer runs today.
        triplets, targets, ed_unit, margin, n_act, n_ina = pick_triplets(strings, emb)
        print(f"  targets = ED / {ed_unit}; candidate triplets (|h| >= {margin:.2e}): "
              f"{n_act} active, {n_ina} inactive")
        loss, grads = train_step(model64, strings, alphabet, m, triplets, targets, margin)
        print(f"  loss = {loss:.6f}")
        case["step"] = {
            "triplets": [list(t) for t in triplets],
            "targets": targets,
            "lambda": LAMBDA,
            "rho": RHO,
            "loss": f32(loss),
            "grads": {k: f32_list(grads[k].reshape(-1)) for k in sorted(grads)},
        }
        cases[name] = case

    path = os.path.join(out_dir, "cnn_ed_cases.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(dumps(cases) + "\n")
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == cases
    for fn in ("cnn_ed_dna.safetensors", "cnn_ed_text.safetensors", "cnn_ed_uniref.safetensors", "cnn_ed_cases.json"):
        print(f"wrote {os.path.join(out_dir, fn)}: {os.path.getsize(os.path.join(out_dir, fn))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

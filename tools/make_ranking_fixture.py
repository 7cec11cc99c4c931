# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""Write tests/fixtures/ranking.safetensors: the ranking head's loss and gradients in PyTorch.

Usage (from the repo root):

    python tools/make_ranking_fixture.py [--out PATH]

The head, as CNN-ED's official code writes its triplet loss (networks.py:424-444: R, S
with weights lambda, rho) plus PNLL on the triplet's three pairs, on n triplets whose
embeddings are rows a = e[:n], p = e[n:2n], m = e[2n:], labels [n, 3] = ED(a,p), ED(a,n),
ED(p,n):

    d_xy = s * ((x - y) ** 2).sum(1)            squared (this project's model)
         = s * torch.norm(x - y, dim=1)         Euclidean (CNN-ED), s = exp(log_s)
    R    = relu(d_ap - d_an + (t_an - t_ap))
    S    = sqrt((d_ap - t_ap)^2 + (d_an - t_an)^2 + (d_pn - t_pn)^2)
    A    = |d_ap - t_ap| + |d_an - t_an| + |d_pn - t_pn|   (the paper's approximation term)
    P    = mean over the three pairs of d - t * log(d + 1e-8)
    loss = mean(hinge * R + approx * S + absolute * A + pnll * P)

computed in float64 by autograd, stored as float32.

Output (safetensors, float32), for each case i:
    case{i}.e        [3n, dim]   embeddings (anchors, positives, negatives)
    case{i}.labels   [n, 3]
    case{i}.log_s    [1]
    case{i}.loss     [1]
    case{i}.de       [3n, dim]   d loss / d e
    case{i}.dlog_s   [1]         d loss / d log_s
    __metadata__: cases = json list of {"hinge", "approx", "absolute", "pnll", "squared"}
"""
import argparse
import json

import torch
from safetensors.torch import save_file

EPS = 1e-8
CASES = [
    # (triplets, dim, hinge, approx, absolute, pnll, squared)
    (7, 80, 1.0, 0.1, 0.0, 0.0, True),
    (7, 80, 1.0, 0.1, 0.0, 0.0, False),
    (33, 80, 1.0, 0.0, 0.0, 1.0, True),
    (5, 16, 10.0, 1.0, 0.0, 0.5, False),
    # The CNN-ED paper's loss: the hinge plus 0.1 x the absolute approximation term.
    (9, 128, 1.0, 0.0, 0.1, 0.0, False),
    (6, 16, 0.5, 0.2, 0.7, 0.3, True),
]


def head(e, labels, log_s, hinge, approx, absolute, pnll, squared):
    n = labels.shape[0]
    a, p, m = e[:n], e[n:2 * n], e[2 * n:]
    s = torch.exp(log_s)

    def dist(x, y):
        if squared:
            return s * ((x - y) ** 2).sum(1)
        return s * torch.norm(x - y, dim=1)

    d = torch.stack([dist(a, p), dist(a, m), dist(p, m)], 1)
    t = labels
    r = torch.relu(d[:, 0] - d[:, 1] + (t[:, 1] - t[:, 0]))
    sq = torch.sqrt(((d - t) ** 2).sum(1))
    l1 = (d - t).abs().sum(1)
    poisson = (d - t * torch.log(d + EPS)).mean(1)
    return (hinge * r + approx * sq + absolute * l1 + pnll * poisson).mean()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/fixtures/ranking.safetensors")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(20261206)
    tensors, meta = {}, []
    for i, (n, dim, hinge, approx, absolute, pnll, squared) in enumerate(CASES):
        e = (torch.rand(3 * n, dim, generator=gen, dtype=torch.float64) * 2 - 1)
        # Partners at graded distances: the positive no farther than the negative.
        ap = torch.randint(0, 6, (n,), generator=gen)
        an = ap + torch.randint(0, 6, (n,), generator=gen)
        pn = torch.randint(0, 12, (n,), generator=gen)
        labels = torch.stack([ap, an, pn], 1).to(torch.float64)
        log_s = torch.tensor([-0.7 if squared else 0.9], dtype=torch.float64)
        # The values are stored as float32: compute from exactly those.
        e = e.float().double().requires_grad_()
        log_s = log_s.float().double().requires_grad_()
        loss = head(e, labels, log_s[0], hinge, approx, absolute, pnll, squared)
        loss.backward()
        for name, value in [("e", e), ("labels", labels), ("log_s", log_s), ("loss", loss.reshape(1)),
                            ("de", e.grad), ("dlog_s", log_s.grad)]:
            tensors[f"case{i}.{name}"] = value.detach().float().contiguous()
        meta.append({"hinge": hinge, "approx": approx, "absolute": absolute, "pnll": pnll,
                     "squared": squared})
    save_file(tensors, args.out, metadata={"cases": json.dumps(meta)})
    print(f"wrote {args.out}: {len(CASES)} cases")


if __name__ == "__main__":
    main()

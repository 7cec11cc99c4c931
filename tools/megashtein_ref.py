# Setup (once, from the repo root):
#   python3 -m venv .venv && .venv/bin/pip install torch safetensors numpy
"""Reference "megashtein" model in PyTorch (REFERENCE.md section 1), for fixtures and benchmarks.

This is the architecture of the released checkpoint, layer for layer, with the same
state_dict keys:

    embedding.weight                   [128, 140]
    conv_layers.{0,3,6,9,12}.weight    [64, 140|64, 3]  Conv1d k=3 stride 1 pad 1
    conv_layers.{0,3,6,9,12}.bias      [64]
      (each conv is followed by AvgPool1d(2) and then ReLU: pool BEFORE activation)
    fc_layers.0.{weight,bias}          [200, 128], [200]  Linear, then ReLU
    fc_layers.2.{weight,bias}          [80, 200], [80]    Linear
    fc_layers.3.{weight,bias,running_mean,running_var,num_batches_tracked}
                                       BatchNorm1d(80), eps 1e-5, momentum 0.1

Forward: tokens (B, 80) int64 -> embedding (B, 80, 140) -> permute (B, 140, 80)
-> conv stack (B, 64, 2) -> flatten channel-major (B, 128) -> fc stack (B, 80).

These are the released widths (character embedding 140, conv channels 64, hidden 200,
embedding 80). `megashtein-gpu train --char-dim --channels --hidden --dim` makes models
of other widths; `EditDistanceModel(embedding_dim, channels, hidden, out_dim)` builds
them and `load_model` reads a file's widths from its shapes (`widths_of`).

Tokenizer: cut to 80 characters, each char -> min(ord(c), 127), pad with 0 to 80.

Library use (from the repo root):

    import sys; sys.path.insert(0, "tools")
    from megashtein_ref import load_model, tokenize_batch
    model = load_model()            # released checkpoint, eval mode, strict load
    emb = model(tokenize_batch(["hello world", "hello word"]))

Command line (prints embeddings of the given strings as JSON lines):

    python tools/megashtein_ref.py [--checkpoint PATH] STRING...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Iterable, Sequence

import torch
import torch.nn as nn

MAX_LEN = 80
VOCAB = 128
EMBED_DIM = 140
CONV_CHANNELS = 64
HIDDEN = 200
OUT_DIM = 80

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CHECKPOINT = "models/reference/megashtein_trained_model.pth"


class EditDistanceModel(nn.Module):
    """The reference CNN. state_dict keys match the released checkpoint exactly."""

    def __init__(
        self,
        embedding_dim: int = EMBED_DIM,
        channels: int = CONV_CHANNELS,
        hidden: int = HIDDEN,
        out_dim: int = OUT_DIM,
    ):
        """The released widths by default; `train --char-dim --channels --hidden --dim`
        sets the others (the model file's `megashtein.widths` metadata records them)."""
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, embedding_dim)
        layers: list[nn.Module] = []
        in_ch = embedding_dim
        for _ in range(5):
            layers += [
                nn.Conv1d(in_ch, channels, kernel_size=3, stride=1, padding=1),
                nn.AvgPool1d(2),
                nn.ReLU(),
            ]
            in_ch = channels
        # indices 0,3,6,9,12 are the convolutions
        self.conv_layers = nn.Sequential(*layers)
        # parameter-free; present in the released checkpoint's module tree (_metadata)
        self.flatten = nn.Flatten()  # (B, 64, 2) -> (B, 128), channel-major: c * 2 + p
        # 80 -> 40 -> 20 -> 10 -> 5 -> 2 (the last pool floors, dropping position 4)
        self.fc_layers = nn.Sequential(
            nn.Linear(channels * 2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim),
            nn.BatchNorm1d(out_dim),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Init of the reference: xavier-uniform conv/linear weights, zero biases,
        embedding N(0, 1), BN gamma 1 / beta 0 (the nn defaults for BN and embedding)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, 80, 140)
        x = x.permute(0, 2, 1)  # (B, 140, 80)
        x = self.conv_layers(x)  # (B, 64, 2)
        x = self.flatten(x)  # (B, 128)
        return self.fc_layers(x)  # (B, 80)


def token_ids(s: str, max_len: int = MAX_LEN) -> list[int]:
    """One string -> exactly max_len ids: cut, min(ord(c), 127), pad with 0."""
    ids = [min(ord(c), VOCAB - 1) for c in s[:max_len]]
    return ids + [0] * (max_len - len(ids))


def tokenize(s: str, max_len: int = MAX_LEN) -> torch.Tensor:
    """One string -> int64 tensor of shape (max_len,)."""
    return torch.tensor(token_ids(s, max_len), dtype=torch.int64)


def tokenize_batch(strings: Iterable[str], max_len: int = MAX_LEN) -> torch.Tensor:
    """Strings -> int64 tensor of shape (N, max_len). An empty list gives (0, max_len)."""
    rows = [token_ids(s, max_len) for s in strings]
    if not rows:
        return torch.zeros((0, max_len), dtype=torch.int64)
    return torch.tensor(rows, dtype=torch.int64)


def resolve_checkpoint(path: str | None = None) -> str:
    """None -> the released checkpoint; relative paths are taken against the repo root."""
    p = path if path is not None else DEFAULT_CHECKPOINT
    if not os.path.isabs(p):
        p = os.path.normpath(os.path.join(REPO_ROOT, p))
    return p


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """Read a state_dict from a torch.save .pth (the released checkpoint) or a
    .safetensors model file (CONTRACTS.md: same names, shapes and dtypes)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def widths_of(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """The layer widths a state_dict's shapes give (as the Rust `Widths::of_state_dict`)."""
    return {
        "embedding_dim": sd["embedding.weight"].shape[1],
        "channels": sd["conv_layers.0.bias"].shape[0],
        "hidden": sd["fc_layers.0.bias"].shape[0],
        "out_dim": sd["fc_layers.2.bias"].shape[0],
    }


def load_model(path: str | None = None, device: str | torch.device = "cpu") -> EditDistanceModel:
    """Build the model at the checkpoint's widths, load it strictly, and return it in
    eval mode."""
    sd = load_state_dict_file(resolve_checkpoint(path))
    model = EditDistanceModel(**widths_of(sd))
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help=f"default: {DEFAULT_CHECKPOINT} (relative to the repo root)")
    ap.add_argument("strings", nargs="*")
    args = ap.parse_args(argv)
    model = load_model(args.checkpoint)
    with torch.inference_mode():
        emb = model(tokenize_batch(args.strings))
    for s, e in zip(args.strings, emb.tolist()):
        print(json.dumps({"string": s, "embedding": e}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

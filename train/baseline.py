"""Train a baseline CNN (``nca_edge.baseline``): cross-entropy, Adam, a few epochs.

Deterministic given the config's seed (initialisation from ``torch.manual_seed``, batch order from
a seeded generator). A few minutes on one CPU thread; no resume (shorter than a checkpoint
period of the CA's trainer).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from nca_edge.baseline import CNN, CNNConfig
from nca_edge.data import Digits


def images(x: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] = g / 255 (the int8 export's input encoding)."""
    return torch.from_numpy(np.asarray(x, np.float32) / np.float32(255.0))[:, None]


@torch.no_grad()
def accuracy(model: CNN, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    model.eval()
    hits = sum(int((model(images(x[i: i + batch])).argmax(1).numpy() == y[i: i + batch]).sum())
               for i in range(0, len(x), batch))
    return 100.0 * hits / max(len(x), 1)


def train_cnn(cfg: CNNConfig, digits: Digits, progress: bool = True) -> tuple[CNN, dict]:
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    model = CNN(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = images(digits.train_x), torch.from_numpy(digits.train_y.astype(np.int64))
    steps = cfg.epochs * (-(-len(x) // cfg.batch_size))
    start = time.time()
    bar = tqdm(total=steps, desc=f"cnn {list(cfg.widths)}", unit="it", disable=not progress)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i: i + cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    meta = {"train_seconds": round(time.time() - start, 1), "steps": steps,
            "data": {"dataset": digits.name, "sha256": digits.source_sha256},
            "float_test_accuracy": round(accuracy(model, digits.test_x, digits.test_y), 2)}
    return model.eval(), meta

"""Training throughput: the project's trainer vs a plain PyTorch reference loop, in one run.

    python scripts/bench_train.py [--iterations 40] [--write docs/results/bench_train.md]

Both do the same work per iteration: batch 16, 28x28 grids, 20 CA steps with fire masks and
residual noise, L2 loss, backward, per-variable gradient normalisation, Adam. Throughput is
counted in grid cell-updates per second (16 * 28 * 28 * 20 per iteration) for both, so the
ratio is the speed-up. The plain loop is the article's model as an nn.Sequential of convs on
the whole grid; the trainer runs the same step on alive cells, computing ds only for the cells
that fire (`nca_edge.cells`, tested equal to the dense step in tests/test_cells.py), plus its
pool and mutation bookkeeping. Torch's default thread count is used for both.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nca_edge.ca import seed_state  # noqa: E402
from nca_edge.config import Config  # noqa: E402
from nca_edge.data import load_digits, to_float  # noqa: E402
from train import Trainer  # noqa: E402


def plain_loop(digits, iterations: int, warmup: int) -> float:
    """The article's model as a plain nn.Sequential of convs on the whole grid, nothing clever."""
    cfg = Config().ca
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(20, 80, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(80, 80, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(80, 19, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(to_float(digits.train_x[:4096]))
    y = torch.from_numpy(digits.train_y[:4096].astype("int64"))
    g = torch.Generator().manual_seed(0)
    t0 = 0.0
    for it in range(warmup + iterations):
        if it == warmup:
            t0 = time.perf_counter()
        idx = torch.randint(len(y), (16,), generator=g)
        state = seed_state(x[idx], cfg)
        alive = (state[:, :1] > cfg.alive_threshold).float()
        for _ in range(20):
            fire = (torch.rand(16, 1, 28, 28, generator=g) <= cfg.fire_rate).float()
            ds = net(state) + torch.randn(16, 19, 28, 28, generator=g) * cfg.noise_std
            state = torch.cat([state[:, :1], state[:, 1:] + ds * fire * alive], 1)
        target = torch.nn.functional.one_hot(y[idx], 10).float()[:, :, None, None]
        per_sample = (((state[:, -10:] - target) ** 2) * alive).sum((1, 2, 3)) / alive.sum((1, 2, 3))
        loss = per_sample.mean()
        opt.zero_grad()
        loss.backward()
        for p in net.parameters():
            p.grad.div_(p.grad.norm() + 1e-8)
        opt.step()
    return (time.perf_counter() - t0) / iterations


def trainer_loop(digits, iterations: int, warmup: int, tmp: Path) -> float:
    t = Trainer(Config(), digits, tmp, torch.device("cpu"))
    for _ in range(warmup):
        t.train_step()
    t0 = time.perf_counter()
    for _ in range(iterations):
        t.train_step()
    return (time.perf_counter() - t0) / iterations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--write", type=Path, default=None, help="Write a Markdown fragment here (docs/results/...).")
    args = ap.parse_args()
    import tempfile

    digits = load_digits("mnist")
    cells = 16 * 28 * 28 * 20
    with tempfile.TemporaryDirectory() as tmp:
        plain = plain_loop(digits, args.iterations, args.warmup)
        fast = trainer_loop(digits, args.iterations, args.warmup, Path(tmp))
    rows = [("plain PyTorch loop (dense conv, full grid)", plain), ("nca-edge trainer (alive cells)", fast)]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    lines = ["| loop | s / iteration | cell-updates / s |", "|---|---:|---:|"]
    lines += [f"| {name} | {sec:.4f} | {cells / sec / 1e6:.2f} M |" for name, sec in rows]
    lines.append(f"| **speed-up** | | **{plain / fast:.2f}x** |")
    table = "\n".join(lines)
    print(table)
    print(f"machine: {machine}")
    if args.write:
        cmd = "python scripts/bench_train.py" + (f" --iterations {args.iterations}" if args.iterations != 40 else "") + f" --write {args.write}"
        text = (f"{table}\n\nMeasured {datetime.date.today().isoformat()} on {machine}; "
                f"{args.iterations} iterations after {args.warmup} warm-up. Command: `{cmd}`\n")
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
        args.write.with_suffix(".json").write_text(json.dumps(
            {"plain_s_per_it": plain, "trainer_s_per_it": fast, "speedup": plain / fast, "machine": machine}, indent=1) + "\n")


if __name__ == "__main__":
    main()

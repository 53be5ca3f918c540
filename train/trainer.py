"""The training loop: the article's recipe, in the alive-cell layout.

One iteration (defaults in ``nca_edge.config.TrainConfig``)::

    idx    = 16 random pool slots (of 160)
    x      = pool[idx]; slots 0..3 <- fresh digits; slots 12..15 <- mutated to new digits
    binary activations (ban/bnn) = sign(x + sigma * logistic noise) with act_noise > 0
             (stochastic binary units; sigma
             falls from act_noise to act_noise_end over act_noise_ramp iterations when set)
    for 20 steps:  x = ca_step(x, fire ~ Bernoulli(0.5), noise ~ N(0, 0.02))
    loss   = mean over samples of  mean over alive cells of  sum_k (x[class k] - onehot_k)^2
             (+ distill_weight * update-rule distillation, see TrainConfig.distill_from)
    grads  = g / (||g|| + 1e-8) per variable;  Adam(lr piecewise: 1e-3, x0.1 at 30k and 70k)
    pool[idx] = x

Run state lives in ``OUT/`` (all written atomically, every ``checkpoint_every`` iterations
and at the end):

* ``model.safetensors`` + ``model.json``: the checkpoint (``nca-edge eval OUT/model``);
* ``snapshots/model-NNNNNN.*``: a copy of the checkpoint at every save (iteration NNNNNN), so a
  run that later degrades or diverges keeps its best point (each is about 100 KB);
* ``train_state.safetensors``: everything ``--resume`` needs (weights, Adam moments, pool,
  RNG states, iteration, elapsed seconds; JSON in the safetensors metadata);
* ``log.csv``: iteration, loss, lr, elapsed seconds.

A resumed run continues exactly where the saved state left off: same pool, same RNG
stream, same numbers as an uninterrupted run (tests/test_train.py checks it).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open

from nca_edge import __version__
from nca_edge.ca import ca_step, mutate, seed_state
from nca_edge.cells import AliveCells
from nca_edge.checkpoint import atomic_save_tensors, save_checkpoint
from nca_edge.config import Config
from nca_edge.data import Digits, to_float
from nca_edge.errors import NCAEdgeError
from nca_edge.model import CAModel

STATE_FILE = "train_state.safetensors"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NCAEdgeError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise NCAEdgeError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)


def cell_loss(hidden: torch.Tensor, plan: AliveCells, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """L2 loss on the class channels of alive cells vs one-hot labels.

    Per sample: mean over its alive cells of sum_k (score_k - onehot_k)^2; then mean over samples.
    """
    scores = hidden[:, -n_classes:]
    target = torch.nn.functional.one_hot(labels[plan.b].long(), n_classes).to(scores.dtype)
    per_cell = ((scores - target) ** 2).sum(1)
    per_sample = torch.zeros(plan.shape[0], device=hidden.device, dtype=hidden.dtype).index_add(0, plan.b, per_cell)
    return (per_sample / plan.counts.clamp(min=1).to(hidden.dtype)).mean()


class Trainer:
    def __init__(self, config: Config, digits: Digits, out_dir: Path, device: torch.device, recipe: str = "",
                 extra_meta: dict | None = None):
        self.config = config
        self.extra_meta = dict(extra_meta or {})  # written into every checkpoint sidecar (e.g. the recipe's text)
        self.cfg = config.ca
        self.tc = config.train
        self.out = Path(out_dir)
        self.device = device
        self.recipe = recipe
        self.digits = digits
        self.train_x = torch.from_numpy(to_float(digits.train_x)).to(device)
        self.train_y = torch.from_numpy(digits.train_y.astype("int64")).to(device)

        torch.manual_seed(self.tc.seed)  # parameter initialisation
        self.model = CAModel(self.cfg).to(device)
        if self.tc.init_from:
            self._warm_start(self.tc.init_from)
        self.teacher = None
        if self.tc.distill_from:
            from nca_edge.checkpoint import load_checkpoint, resolve_model

            self.teacher, _, _ = load_checkpoint(resolve_model(self.tc.distill_from), map_location=str(device))
            self.teacher.requires_grad_(False)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.tc.lr)
        self.gen = torch.Generator(device="cpu").manual_seed(self.tc.seed)  # data sampling
        self.dgen = torch.Generator(device=device).manual_seed(self.tc.seed + 1)  # masks, noise
        self.iteration = 0
        self.elapsed = 0.0
        self.pool_x, self.pool_y = self._fresh(self.tc.pool_size)

    def _warm_start(self, path: str) -> None:
        """Copy every tensor of a checkpoint (e.g. the float model) whose name and shape match."""
        from nca_edge.checkpoint import load_checkpoint, resolve_model

        src, _, _ = load_checkpoint(resolve_model(path), map_location=str(self.device))
        own = self.model.state_dict()
        copied = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
        if not copied:
            raise NCAEdgeError(f"--init {path}: no tensor matches this model's names and shapes")
        self.model.load_state_dict(copied, strict=False)
        if self.cfg.learned_scale and not any(k.endswith(".scale") for k in copied):
            self.model.reset_scales()  # e.g. from a float model: alpha_o = mean |W[o]|
        self.model.clip_latent_weights()

    # ------------------------------------------------------------------ data
    def _sample_digits(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.train_y), (n,), generator=self.gen).to(self.device)
        return self.train_x[idx], self.train_y[idx]

    def _fresh(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        px, y = self._sample_digits(n)
        return seed_state(px, self.cfg), y

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tc = self.tc
        idx = torch.randperm(tc.pool_size, generator=self.gen)[: tc.batch_size].to(self.device)
        x, y = self.pool_x[idx].clone(), self.pool_y[idx].clone()
        if tc.n_fresh:
            x[: tc.n_fresh], y[: tc.n_fresh] = self._fresh(tc.n_fresh)
        if tc.n_mutate:
            k = tc.batch_size - tc.n_mutate
            px, ny = self._sample_digits(tc.n_mutate)
            x[k:] = mutate(x[k:], px, self.cfg)
            y[k:] = ny
        return idx, x, y

    # ------------------------------------------------------------------ one iteration
    def train_step(self) -> float:
        cfg, tc = self.cfg, self.tc
        sigma = tc.act_sigma(self.iteration)
        self.model.act_noise = (sigma, self.dgen) if sigma > 0 else None
        idx, x, y = self._batch()
        plan = AliveCells(x[:, 0], cfg)
        hidden = plan.gather(x)
        distill = hidden.new_zeros(())
        for _ in range(tc.steps):
            fire = torch.rand(plan.n, generator=self.dgen, device=self.device) <= cfg.fire_rate
            noise = None
            if cfg.noise_std > 0:
                noise = torch.randn(plan.n, cfg.mutable, generator=self.dgen, device=self.device) * cfg.noise_std
            new = ca_step(self.model, hidden, fire, noise, cells=plan)
            if self.teacher is not None:  # what the teacher's rule makes of the same state
                with torch.no_grad():
                    target = ca_step(self.teacher, hidden.detach(), fire, noise, cells=plan)
                distill = distill + ((new - target) ** 2).sum(1).mean()
            hidden = new
        loss = cell_loss(hidden, plan, y, cfg.n_classes) + tc.distill_weight * distill / tc.steps
        if not torch.isfinite(loss):
            raise NCAEdgeError(
                f"loss became {float(loss.detach())} at iteration {self.iteration + 1}; nothing was saved for it "
                f"(the last checkpoint in {self.out} is intact): lower --lr or change --seed"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_norm:
            with torch.no_grad():
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.div_(p.grad.norm() + 1e-8)
        for group in self.opt.param_groups:
            group["lr"] = tc.lr_at(self.iteration)
        self.opt.step()
        self.model.clip_latent_weights()
        with torch.no_grad():
            self.pool_x[idx] = plan.scatter(hidden.detach(), x[:, 0])
            self.pool_y[idx] = y
        self.iteration += 1
        return float(loss.detach())

    # ------------------------------------------------------------------ persistence
    def _adam_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        names = dict((id(p), n) for n, p in self.model.named_parameters())
        for p, st in self.opt.state.items():
            n = names[id(p)]
            out[f"adam.{n}.exp_avg"] = st["exp_avg"]
            out[f"adam.{n}.exp_avg_sq"] = st["exp_avg_sq"]
            out[f"adam.{n}.step"] = torch.as_tensor(st["step"], dtype=torch.float64).reshape(1)
        return out

    def save(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update(self._adam_tensors())
        tensors["pool_x"] = self.pool_x
        tensors["pool_y"] = self.pool_y
        tensors["rng.data"] = self.gen.get_state()
        tensors["rng.device"] = self.dgen.get_state()
        meta = {
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "config": self.config.to_dict(),
            "data_sha256": self.digits.source_sha256,
            "device": str(self.device),
            "recipe": self.recipe,
            "extra_meta": self.extra_meta,
            "package_version": __version__,
        }
        atomic_save_tensors(self.out / STATE_FILE, tensors, metadata={"nca_edge": json.dumps(meta)})
        for path in (self.out / "model", self.out / "snapshots" / f"model-{self.iteration:06d}"):
            save_checkpoint(
                path,
                self.model,
                self.config,
                recipe=self.recipe,
                data={"dataset": self.digits.name, "sha256": self.digits.source_sha256},
                iterations=self.iteration,
                train_seconds=round(self.elapsed, 1),
                device=_device_name(self.device),
                **self.extra_meta,
            )

    @staticmethod
    def read_state_meta(out_dir: Path) -> dict:
        path = Path(out_dir) / STATE_FILE
        try:
            with safe_open(str(path), framework="pt") as f:
                return json.loads(f.metadata()["nca_edge"])
        except Exception as e:
            raise NCAEdgeError(f"{path}: cannot resume from this training state ({type(e).__name__}: {e})") from None

    def load(self) -> None:
        path = self.out / STATE_FILE
        meta = self.read_state_meta(self.out)
        if meta["data_sha256"] != self.digits.source_sha256:
            raise NCAEdgeError(f"{path}: saved run used different data (sha256 {meta['data_sha256'][:12]}...)")
        t = load_file(str(path), device="cpu")
        self.model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        # Adam: run one zero-lr step to create the state slots, then overwrite them.
        for p in self.model.parameters():
            p.grad = torch.zeros_like(p)
        lr = [g["lr"] for g in self.opt.param_groups]
        for g in self.opt.param_groups:
            g["lr"] = 0.0
        self.opt.step()
        for g, v in zip(self.opt.param_groups, lr):
            g["lr"] = v
        for n, p in self.model.named_parameters():
            st = self.opt.state[p]
            st["exp_avg"].copy_(t[f"adam.{n}.exp_avg"])
            st["exp_avg_sq"].copy_(t[f"adam.{n}.exp_avg_sq"])
            st["step"].fill_(float(t[f"adam.{n}.step"][0]))
        self.opt.zero_grad(set_to_none=True)
        self.pool_x = t["pool_x"].to(self.device)
        self.pool_y = t["pool_y"].to(self.device)
        self.gen.set_state(t["rng.data"])
        if str(meta.get("device", "cpu")).startswith(self.device.type):
            self.dgen.set_state(t["rng.device"])
        self.recipe = meta.get("recipe") or self.recipe  # the command that started the run
        self.extra_meta = meta.get("extra_meta") or self.extra_meta
        self.iteration = int(meta["iteration"])
        self.elapsed = float(meta["elapsed"])

    # ------------------------------------------------------------------ loop
    def run(self, progress: bool = True) -> None:
        """Train up to ``iterations``. SIGINT/SIGTERM stop after the current iteration with a
        checkpoint saved (``self.interrupted`` is then True), so ``--resume`` loses nothing."""
        from tqdm import tqdm

        tc = self.tc
        self.out.mkdir(parents=True, exist_ok=True)
        log = self.out / "log.csv"
        if not log.exists():
            log.write_text("iteration,loss,lr,elapsed_s\n")
        bar = tqdm(
            total=tc.iterations, initial=self.iteration, disable=not progress, unit="it",
            dynamic_ncols=True, desc=f"train {self.cfg.quant}", file=sys.stderr,
        )
        rows: list[str] = []

        def flush() -> None:
            self.save()
            with open(log, "a") as f:
                f.writelines(rows)
            rows.clear()

        self.interrupted = False
        restore = _install_stop_handlers(self)
        try:
            while self.iteration < tc.iterations and not self.interrupted:
                t0 = time.perf_counter()
                loss = self.train_step()
                self.elapsed += time.perf_counter() - t0
                rows.append(f"{self.iteration},{loss:.6f},{tc.lr_at(self.iteration - 1):.2e},{self.elapsed:.1f}\n")
                bar.update(1)
                if self.iteration % 10 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{tc.lr_at(self.iteration - 1):.0e}")
                if self.iteration % tc.checkpoint_every == 0:
                    flush()
            if rows or self.iteration == tc.iterations or self.iteration == 0:
                flush()
        finally:
            restore()
            bar.close()


def _install_stop_handlers(trainer: Trainer):
    """SIGINT/SIGTERM -> finish the current iteration, save, stop. Returns a restore function."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, frame):
        trainer.interrupted = True

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, h) for sig, h in old.items()]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def train(config: Config, digits: Digits, out_dir: str | Path, device: str = "auto", resume: bool = False,
          progress: bool = True, recipe: str | None = None, extra_meta: dict | None = None) -> Trainer:
    """Train (or resume) a run in ``out_dir``. On resume the saved config wins, except ``iterations``."""
    out = Path(out_dir)
    dev = pick_device(device)
    if recipe is None:  # the command that started this run (a resume continues it exactly)
        recipe = "nca-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
    state_exists = (out / STATE_FILE).is_file()
    if resume:
        if not state_exists:
            raise NCAEdgeError(f"--resume: no {STATE_FILE} in {out} (start a run there without --resume)")
        saved = Config.from_dict(Trainer.read_state_meta(out)["config"])
        config = replace(saved, train=replace(saved.train, iterations=config.train.iterations))
    elif state_exists:
        raise NCAEdgeError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    trainer = Trainer(config, digits, out, dev, recipe=recipe, extra_meta=extra_meta)
    if resume:
        trainer.load()
    trainer.run(progress=progress)
    return trainer

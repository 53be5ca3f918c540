"""Configuration: every hyperparameter of the CA and of its training recipe.

`Config` is the one object that holds every hyperparameter; it nests one dataclass per
concept (`CAConfig`: the cell and its update rule; `TrainConfig`: the training recipe).
It is written into every checkpoint's JSON sidecar and read back from it, so a checkpoint
always says exactly what produced it. Defaults reproduce the Distill article
"Self-classifying MNIST Digits" (L2 loss + residual noise row).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

QUANT_VARIANTS = ("float", "bwn", "ban", "bnn")
LAYERS = ("perceive", "update1", "update2")  # the three convolutions, in order


@dataclass(frozen=True)
class CAConfig:
    """The cell: its state layout and its update rule.

    State per cell: ``channels`` values. Channel 0 is the immutable grey pixel; channels
    1..channels-1 are mutable, the last ``n_classes`` of them are the class scores.

    Update rule (one CA step, see ``nca_edge.ca.ca_step``)::

        p   = relu(conv3x3(state; perception))        # perception: 3x3 conv, C -> P
        h   = relu(conv1x1(p; hidden))                 # P -> H
        ds  = conv1x1(h; channels - 1)                 # H -> C-1, zero-initialised kernel
        ds += N(0, noise_std)                          # training only, before masking
        m   = (u <= fire_rate) and (pixel > alive_threshold),  u ~ U[0, 1) per cell
        state[1:] += ds * m                            # dead cells never change
    """

    channels: int = 20
    perception: int = 80
    hidden: int = 80
    n_classes: int = 10
    fire_rate: float = 0.5
    noise_std: float = 0.02
    alive_threshold: float = 0.1
    quant: str = "float"
    # ban/bnn only: also binarize the first layer's input (the state), as sign(state - t_c) with a
    # learned threshold per channel; False keeps the state real-valued there (first-layer exception).
    binary_input: bool = False
    # ban/bnn: the binary activation of the hidden layers: "sign" (+-1, Larq's ste_sign) or
    # "heaviside" (0/1, Larq's ste_heaviside: the 1-bit ReLU; equal to sign with folded constants).
    binary_act: str = "sign"
    # bwn/bnn: each binary kernel's per-output-channel scale alpha_o is a trained parameter
    # (initialised to mean |W[o]|) instead of Larq's stop-gradient mean |W[o]|.
    learned_scale: bool = False
    # Fixed-point state: every state value (pixel included) is an int8 q meaning q / 2**state_frac_bits,
    # enforced in training by fake quantization after every update. None = float state.
    state_frac_bits: int | None = None
    # bwn/bnn: layers (of LAYERS) whose kernels stay real-valued (int8 on a device) instead of binary,
    # the usual first/last-layer exception of binary networks; () = every kernel binary.
    real_weights: tuple[str, ...] = ()
    # Depthwise perception: the 3x3 conv filters each state channel separately, perception /
    # channels filters per channel (as the growing-NCA perception, seed 001), 9 P weights
    # instead of 9 C P. Binary variants keep it real (it must be in real_weights).
    depthwise: bool = False
    # Layers whose real kernels (not low-bit) are int4 instead of int8 (float32 in float/ban):
    # per-output-channel symmetric, W ~ s_o * q, q in -7..7, s_o = max |W[o]| / 7, fake-quantized
    # in training (nca_edge.experimental.int4_weights). Experimental: training and evaluation only.
    int4: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.quant not in QUANT_VARIANTS:
            raise ValueError(f"unknown quantization variant {self.quant!r}; expected one of {QUANT_VARIANTS}")
        if self.channels < self.n_classes + 1:
            raise ValueError("channels must hold the pixel and the class scores")
        if self.binary_act not in ("sign", "heaviside"):
            raise ValueError(f"binary_act must be 'sign' or 'heaviside', not {self.binary_act!r}")
        if self.learned_scale and not self.binary_weights:
            raise ValueError("learned_scale needs a variant with binary weights (bwn, bnn)")
        if self.binary_input and not self.binary_activations:
            raise ValueError("binary_input needs a variant with binary activations (ban, bnn)")
        if self.state_frac_bits is not None and not 0 <= self.state_frac_bits <= 7:
            raise ValueError("state_frac_bits must be in 0..7 (int8 state)")
        if any(n not in LAYERS for n in self.real_weights) or len(set(self.real_weights)) != len(self.real_weights):
            raise ValueError(f"real_weights must name distinct layers of {LAYERS}, not {self.real_weights!r}")
        if self.real_weights and not self.binary_weights:
            raise ValueError("real_weights needs a variant with binary weights (bwn, bnn)")
        if self.depthwise and self.perception % self.channels:
            raise ValueError("depthwise perception needs perception to be a multiple of channels")
        if self.depthwise and self.binary_weights and "perceive" not in self.real_weights:
            raise ValueError("a depthwise perception stays real: add perceive to real_weights")
        if any(n not in LAYERS or self.binary_kernel(n) for n in self.int4) or len(set(self.int4)) != len(self.int4):
            raise ValueError(f"int4 must name distinct layers with real kernels (in real_weights for bwn/bnn), not {self.int4!r}")
        if not 0.0 < self.fire_rate <= 1.0:
            raise ValueError("fire_rate must be in (0, 1]")

    @property
    def binary_weights(self) -> bool:
        return self.quant in ("bwn", "bnn")

    def binary_kernel(self, layer: str) -> bool:
        """Whether ``layer``'s kernel is binary (+-alpha_o) in this variant."""
        return self.binary_weights and layer not in self.real_weights

    @property
    def binary_activations(self) -> bool:
        return self.quant in ("ban", "bnn")

    @property
    def mutable(self) -> int:
        """Number of mutable channels (all but the pixel)."""
        return self.channels - 1

    def param_count(self) -> int:
        c, p, h = self.channels, self.perception, self.hidden
        n = (9 * (1 if self.depthwise else c) * p + p) + (p * h + h) + (h * (c - 1) + (c - 1)) + (c if self.binary_input else 0)
        if self.learned_scale:
            n += sum(out for name, out in zip(LAYERS, (p, h, c - 1)) if self.binary_kernel(name))
        return n


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (pool, mutation, loss, optimiser schedule)."""

    iterations: int = 100_000
    batch_size: int = 16
    pool_size: int = 160
    n_fresh: int = 4  # batch slots replaced by fresh digits each iteration
    n_mutate: int = 4  # batch slots whose digit is swapped ("mutation")
    steps: int = 20  # CA steps per iteration; loss at the last step
    lr: float = 1e-3
    lr_boundaries: tuple[int, ...] = (30_000, 70_000)
    lr_decay: float = 0.1  # multiplied in at each boundary
    grad_norm: bool = True  # g <- g / (||g|| + 1e-8), per variable
    dataset: str = "mnist"
    seed: int = 0
    checkpoint_every: int = 1000
    init_from: str = ""  # warm start: a checkpoint (path or shipped name) whose matching tensors are copied
    # Distillation of the update rule: at every step, the student's next state from its own current
    # state is pulled towards the teacher's next state from that same state (same masks and noise):
    # loss += distill_weight * mean over steps and alive cells of ||student' - teacher'||^2.
    distill_from: str = ""
    distill_weight: float = 0.0
    # Stochastic binary activations (ban/bnn): in training each binary activation is
    # sign(x + act_noise * logistic noise) (nca_edge.quant.noisy_sign); 0 = the exact sign + STE.
    act_noise: float = 0.0
    # Annealing of act_noise: sigma falls geometrically from act_noise to act_noise_end over the
    # first act_noise_ramp iterations, then stays there (0 = no annealing: sigma = act_noise).
    act_noise_end: float = 0.0
    act_noise_ramp: int = 0

    def __post_init__(self) -> None:
        if self.n_fresh + self.n_mutate > self.batch_size:
            raise ValueError("n_fresh + n_mutate must not exceed batch_size")
        if self.batch_size > self.pool_size:
            raise ValueError("batch_size must not exceed pool_size")
        if self.act_noise_ramp and not 0 < self.act_noise_end <= self.act_noise:
            raise ValueError("act_noise_ramp needs 0 < act_noise_end <= act_noise")
        if self.iterations < 0 or self.steps < 1:
            raise ValueError("iterations must be >= 0 and steps >= 1")

    def act_sigma(self, iteration: int) -> float:
        """sigma of the stochastic binary activations at an iteration (0 = exact sign + STE)."""
        if self.act_noise <= 0 or self.act_noise_ramp <= 0 or self.act_noise_end <= 0:
            return self.act_noise
        t = min(1.0, iteration / self.act_noise_ramp)
        return float(self.act_noise * (self.act_noise_end / self.act_noise) ** t)

    def lr_at(self, iteration: int) -> float:
        """Piecewise-constant learning rate (the article's PiecewiseConstantDecay)."""
        k = sum(1 for b in self.lr_boundaries if iteration >= b)
        return self.lr * (self.lr_decay**k)


@dataclass(frozen=True)
class Config:
    """Every hyperparameter: the CA and the recipe that trained it."""

    ca: CAConfig = field(default_factory=CAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """The config in a checkpoint sidecar; retired options are dropped where they are inactive."""
        return cls(ca=_build(CAConfig, _retire(d.get("ca", {}))), train=_build(TrainConfig, _retire(d.get("train", {}))))


# Options whose experiments lost and whose code paths were deleted (results and the commit that
# had them: docs/experiments/README.md, "Retired options"), with their inactive value. A config
# that still uses one cannot be run by this version.
RETIRED = {"separable": 0, "ternary": (), "fresh_warmup": 0, "binarize_ramp": 0, "sharpen_ramp": 0, "act_norm": False,
           "sharpen_beta": None}  # None: any value (it meant nothing without sharpen_ramp)


def _retire(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if k not in RETIRED:
            out[k] = v
        elif RETIRED[k] is not None and (tuple(v) if isinstance(v, list) else v) != RETIRED[k]:
            raise ValueError(f"{k} = {v!r} is a retired option (docs/experiments/README.md, 'Retired options')")
    return out


def _build(kind, d: dict):
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
    kwargs = dict(d)
    for f in dataclasses.fields(kind):
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return kind(**kwargs)

"""Recipes: how a model is made, as a plain TOML file (``recipes/NAME.toml``), one per shipped model.

A recipe is a list of stages run in order; each stage writes its own run directory
``OUT/STAGE``. Two kinds of stage::

    [[stage]]                      # kind = "train" (the default): one training run
    name = "bnn"
    init = "narrow"                # warm start: an earlier stage's model, a shipped model, or ""
    [stage.ca]                     # nca_edge.config.CAConfig fields (defaults: the article's)
    quant = "bnn"
    [stage.train]                  # nca_edge.config.TrainConfig fields
    iterations = 6000

    [[stage]]
    name = "narrow"
    kind = "narrow"                # keep the perception features / hidden units that carry most
    init = "ban"                   # (nca_edge.warm_start.narrow), no training
    perception = 74
    hidden = 80

    [[stage]]
    name = "widen"
    kind = "widen"                 # every hidden unit split into `factor` copies, noise on the
    init = "bwn-f"                 # copies' latent weights (nca_edge.warm_start.widen_hidden)
    factor = 2
    noise = 0.1
    seed = 0

``init`` names an earlier stage of the same recipe when one has that name, else a shipped model
(``float``, ``ban``, ...) or a checkpoint path. The last stage's model is the recipe's model. The
recipe's text is written into every checkpoint it makes (sidecar key ``recipe_toml``), so a model
always carries the whole file that produced it. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import CAConfig, Config, TrainConfig, _build
from .errors import NCAEdgeError

STAGE_KINDS = ("train", "narrow", "widen")


def recipes_dir() -> Path:
    """The repository's ``recipes/`` folder (next to the package; the install is editable)."""
    return Path(__file__).resolve().parent.parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str = "train"
    init: str = ""  # an earlier stage's name, a shipped model or a checkpoint path
    config: Config = field(default_factory=Config)  # train stages
    perception: int = 0  # narrow stages
    hidden: int = 0
    factor: int = 0  # widen stages
    noise: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Recipe:
    name: str
    text: str  # the TOML source, recorded in every checkpoint
    description: str
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise NCAEdgeError(f"recipe {self.name}: no stage {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def with_overrides(self, iterations: int | None = None, seed: int | None = None) -> "Recipe":
        """Every train stage with ``iterations`` / ``seed`` replaced (None keeps the recipe's)."""
        def over(s: Stage) -> Stage:
            if s.kind != "train":
                return s
            tc = s.config.train
            tc = replace(tc, iterations=tc.iterations if iterations is None else iterations,
                         seed=tc.seed if seed is None else seed)
            return replace(s, config=replace(s.config, train=tc))
        return replace(self, stages=tuple(over(s) for s in self.stages))


def resolve(ref: str) -> Path:
    """A recipe name (``bnn``) or a path to a TOML file -> its path."""
    p = Path(ref)
    if p.suffix == ".toml" or "/" in ref:
        if not p.is_file():
            raise NCAEdgeError(f"recipe file {ref} not found")
        return p
    named = recipes_dir() / f"{ref}.toml"
    if not named.is_file():
        raise NCAEdgeError(f"no recipe named {ref!r} (recipes: {', '.join(recipe_names()) or 'none'}; or give a .toml path)")
    return named


def load_recipe(ref: str) -> Recipe:
    path = resolve(ref)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise NCAEdgeError(f"{path}: cannot read the recipe ({e})") from None
    return parse_recipe(text, name=path.stem, where=str(path))


def parse_recipe(text: str, name: str, where: str = "recipe") -> Recipe:
    """The recipe in ``text``; any problem is one NCAEdgeError naming ``where``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise NCAEdgeError(f"{where}: not valid TOML ({e})") from None
    unknown = set(doc) - {"description", "stage"}
    if unknown:
        raise NCAEdgeError(f"{where}: unknown top-level keys {sorted(unknown)} (expected description, [[stage]])")
    raw = doc.get("stage")
    if not isinstance(raw, list) or not raw:
        raise NCAEdgeError(f"{where}: needs at least one [[stage]]")
    stages: list[Stage] = []
    for i, s in enumerate(raw, 1):
        label = f"{where}, stage {i}"
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"].strip():
            raise NCAEdgeError(f"{label}: every stage needs a name")
        sname = s["name"]
        if "/" in sname or sname in (".", "..") or sname in {t.name for t in stages}:
            raise NCAEdgeError(f"{label}: stage name {sname!r} must be unique and contain no '/'")
        kind = s.get("kind", "train")
        if kind not in STAGE_KINDS:
            raise NCAEdgeError(f"{label} ({sname}): kind {kind!r} is not one of {STAGE_KINDS}")
        init = s.get("init", "")
        if not isinstance(init, str):
            raise NCAEdgeError(f"{label} ({sname}): init must be a string")
        allowed = {"name", "kind", "init"} | {"train": {"ca", "train"}, "narrow": {"perception", "hidden"},
                                               "widen": {"factor", "noise", "seed"}}[kind]
        extra = set(s) - allowed
        if extra:
            raise NCAEdgeError(f"{label} ({sname}): unknown keys {sorted(extra)} for a {kind} stage")
        if kind == "narrow":
            p, h = s.get("perception"), s.get("hidden")
            if not init or not all(isinstance(v, int) and v >= 1 for v in (p, h)):
                raise NCAEdgeError(f"{label} ({sname}): a narrow stage needs init and perception, hidden >= 1")
            stages.append(Stage(sname, kind, init, perception=p, hidden=h))
            continue
        if kind == "widen":
            f, noise, seed = s.get("factor"), s.get("noise", 0.0), s.get("seed", 0)
            if (not init or not isinstance(f, int) or f < 2 or not isinstance(noise, (int, float)) or noise < 0
                    or not isinstance(seed, int)):
                raise NCAEdgeError(f"{label} ({sname}): a widen stage needs init, factor >= 2, noise >= 0 and an integer seed")
            stages.append(Stage(sname, kind, init, factor=f, noise=float(noise), seed=seed))
            continue
        if not isinstance(s.get("ca", {}), dict) or not isinstance(s.get("train", {}), dict):
            raise NCAEdgeError(f"{label} ({sname}): ca and train must be tables")
        if "init_from" in s.get("train", {}):
            raise NCAEdgeError(f"{label} ({sname}): set the warm start with the stage's init, not train.init_from")
        try:
            ca = _build(CAConfig, s.get("ca", {}))
            tc = _build(TrainConfig, {**s.get("train", {}), "init_from": _init_ref(init, stages)})
        except (TypeError, ValueError) as e:
            raise NCAEdgeError(f"{label} ({sname}): {e}") from None
        problem = _mismatch(ca, tc)
        if problem:
            raise NCAEdgeError(f"{label} ({sname}): {problem}")
        stages.append(Stage(sname, kind, init, config=Config(ca=ca, train=tc)))
    desc = doc.get("description", "")
    return Recipe(name=name, text=text, description=desc if isinstance(desc, str) else "", stages=tuple(stages))


def _mismatch(ca: CAConfig, tc: TrainConfig) -> str:
    """Training settings that mean nothing for this variant (a silent no-op is a mistake)."""
    if tc.act_noise and not ca.binary_activations:
        return f"act_noise needs binary activations (quant ban or bnn, not {ca.quant})"
    if tc.distill_weight and not tc.distill_from:
        return "distill_weight needs distill_from"
    return ""


def _init_ref(init: str, earlier: list[Stage]) -> str:
    """What TrainConfig.init_from records: ``stage:NAME`` for an earlier stage, else ``init`` as is."""
    return f"stage:{init}" if init in {s.name for s in earlier} else init

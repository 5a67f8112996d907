"""Typed hyper-parameters, TOML input, durations and validation.

A run's configuration is built in layers, each overriding the one before:
dataclass defaults <- the model's paper preset <- a TOML file <- command-line flags.
`ticketlab.configure.build_config` stacks them (presets live in the model registry, data set sizes in
the data registry); this module turns the merged layers into a validated RunConfig and never imports
those registries. What names a run's folder is identity.py's business, not this module's.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, get_args, get_origin, get_type_hints

from .errors import TicketlabError
from .seeds import check_seed
from .settings import registry, setting, setting_of


RETRAIN_MODES = ("rewind", "lr_rewind", "finetune", "scratch")
AUGMENTS = ("none", "flip_crop")  # dataset.augment (data/augment.py)
NOISE_TYPES = ("symmetric", "pairflip", "asymmetric")  # dataset.noise_type (data/noise.py)
NOISY = ("with --label-noise > 0", lambda c: c.dataset.label_noise > 0)  # where noise_type and noise_seed act
OPTIMIZERS = ("adam", "sgd")  # training.optimizer (training/optim.py)
LOSSES = ("cross_entropy", "mse")  # training.loss
# The registries sit above this module: named here, read when a help text is built (settings.registry).
MODEL_CHOICES = registry("ticketlab.models:MODEL_NAMES")
DATASET_CHOICES = registry("ticketlab.data:DATASETS")
ALLOCATION_CHOICES = registry("ticketlab.pruning:ALLOCATIONS")
INIT_CHOICES = registry("ticketlab.models:INITS")
PRESET_INIT = "preset"  # model.init, model.bias_init: the model's preset's, else the LTH paper's (models.registry)


@dataclass(frozen=True)
class DatasetHparams:
    name: str = setting("fashion_mnist", "the data set", flag="dataset", choices=DATASET_CHOICES,
                        check_choices=False, preset=True)
    val_size: int = setting(5000, "validation examples held out of the training set, as in the paper",
                            preset=True)
    split_seed: int = setting(0, "which examples the validation split holds (the same for every replicate)")
    # Width sweeps and double descent use a few thousand so that networks can interpolate.
    subsample: int = setting(0, "training examples kept after the validation split, a seeded subset, the same "
                                "for every replicate (0: all)")
    # Label noise on the training split only: "symmetric" draws the new class uniformly among the others,
    # "pairflip" moves class c to c + 1 mod C, "asymmetric" uses the data set's confusable-class map.
    label_noise: float = setting(0.0, "fraction of training labels changed (exactly round(p n); validation and "
                                      "test labels never)")
    noise_type: str = setting("symmetric", "symmetric: a random other class; pairflip: c -> c+1; asymmetric: "
                                           "confusable classes", choices=NOISE_TYPES, applies=NOISY)
    noise_seed: int = setting(0, "which labels change (the same for every replicate)", applies=NOISY)
    # On whole tensors, a function of (data seed, step), so a resumed run is bit-identical.
    augment: str = setting("none", "augmentation of each training batch: none, or flip_crop (random horizontal "
                                   "flip and 4-pixel pad-and-crop)", choices=AUGMENTS, preset=True)


@dataclass(frozen=True)
class ModelHparams:
    name: str = setting("lenet_300_100", "the network (a registered model; <..>: a family of names)",
                        flag="model", choices=MODEL_CHOICES, check_choices=False)
    # "preset": the model's preset init, else glorot_normal (the paper's Gaussian Glorot), resolved where the
    # weights are drawn (models.build_model), so ModelHparams("cifar_resnet_20") draws what the CLI draws
    init: str = setting(PRESET_INIT, "initial weights' distribution: preset (the model's preset, else "
                                     "glorot_normal, the paper's Gaussian Glorot) or one of the inits",
                        choices=INIT_CHOICES, check_choices=False)
    # "preset" as for init: the model's preset bias init (OpenLTH's cifar_resnet_*, cifar_vgg_*: fan_in_uniform),
    # else zeros. The identity holds the resolved value and leaves zeros out (identity.model_fields), so every
    # folder stored before this setting keeps its name and --bias-init zeros finds the OpenLTH presets' old ones
    bias_init: str = setting(PRESET_INIT, "Linear/Conv biases: preset (the model's preset, else zeros), zeros (the "
                                          "LTH paper's) or fan_in_uniform (U(-b, b), b = 1/sqrt(fan_in): PyTorch's "
                                          "default, kept by OpenLTH); drawn after every weight, so a seed's weights "
                                          "are the same under each",
                             choices=registry("ticketlab.models.init:BIAS_CHOICES"),
                             applies=("with a model whose weights are drawn (not a planted one)",
                                      lambda c: not c.model.name.startswith("planted_")))
    dropout: float = setting(0.0, "dropout on the hidden fully connected layers")
    width: float = setting(1.0, "multiplies every hidden width / channel count (rounded, at least 1): width "
                                "sweeps")
    planted_output: str = setting("scaled", "how a planted network's output units are planted: scaled (Plant 'n' "
                                            "Seek's: found and scaled like the hidden units, so the planted "
                                            "weights keep the init's scale and the ticket computes the target up "
                                            "to a positive factor per output) or exact (factor 1: the target's "
                                            "own output weights, up to 1e4 on circle)",
                                  choices=registry("ticketlab.models.planted:OUTPUTS"),
                                  applies=("with a planted model", lambda c: c.model.name.startswith("planted_")))


@dataclass(frozen=True)
class TrainingHparams:
    optimizer: str = setting("adam", "the optimizer", choices=OPTIMIZERS, preset=True)
    lr: float = setting(1.2e-3, "learning rate", preset=True)
    batch_size: int = setting(60, "examples per optimizer step", preset=True)
    train_steps: int = setting(50_000, "steps per level: 50000, 50000it, 20ep, 1ep10it", steps=True, preset=True)
    momentum: float = setting(0.0, "SGD momentum", preset=True,
                              applies=("with --optimizer sgd", lambda c: c.training.optimizer == "sgd"))
    nesterov: bool = setting(False, "Nesterov momentum (sgd with momentum > 0)")
    weight_decay: float = setting(0.0, "L2 weight decay", preset=True)
    milestones: tuple[int, ...] = setting((), "comma list of steps at which the LR is multiplied by --gamma "
                                              "(e.g. 80ep,120ep)", steps=True, preset=True)
    gamma: float = setting(0.1, "the LR factor at each milestone", preset=True,
                           applies=("with --milestones", lambda c: bool(c.training.milestones)))
    warmup_steps: int = setting(0, "linear LR warm-up from 0 to lr over this many steps", steps=True)
    eval_every: int = setting(100, "steps between evaluations (validation loss: the early-stopping criterion)",
                              steps=True, preset=True)
    # Exact whatever test_every is: the weights of the best validation loss are kept and tested.
    test_every: int = setting(0, "steps between test evaluations (0: at every evaluation); the early-stopping "
                                 "step's test accuracy stays exact", steps=True)
    loss: str = setting("cross_entropy", "cross_entropy (classification) or mse (regression: planted ReLU, "
                                         "Helix)", choices=LOSSES, preset=True)


@dataclass(frozen=True)
class PruningHparams:
    strategy: str = setting("layerwise", "how survivors are allocated to layers: a registered allocation",
                            choices=ALLOCATION_CHOICES, check_choices=False, preset=True)
    rate: float = setting(0.2, "fraction of the surviving weights PRUNED per level (0.2 prunes 20%, keeps 80%)",
                          flag="prune_rate", preset=True)
    conv_rate: float | None = setting(None, "fraction pruned per level in conv layers (layer-wise; unset: "
                                            "--prune-rate)", preset=True)
    output_rate: float | None = setting(None, "fraction pruned per level in the last prunable layer (paper: "
                                              "half the rate; unset: as its kind)", preset=True)
    layer_rates: tuple[tuple[str, float], ...] = setting((), "per-layer rates by parameter name: a TOML table "
                                                             "[pruning.layer_rates] only (a table of names, not a "
                                                             "flag)", cli=False)
    ignore: tuple[str, ...] = setting((), "comma list of parameter names never pruned (e.g. fc.weight)",
                                      preset=True)
    # How IMP's pooled levels count (pruning.allocation.ladder_density). The OpenLTH presets (cifar_resnet_*,
    # cifar_vgg_*) set openlth; the default keeps every stored folder's meaning.
    COUNTINGS = ("ticketlab", "openlth")
    counting: str = setting("ticketlab", "how many weights each IMP level prunes with a pooled strategy: ticketlab "
                                         "(the rate of the non-ignored layers' weights, closed form round(n (1 - "
                                         "rate)^L), as the LTH paper) or openlth (OpenLTH's sparse_global: "
                                         "ceil(rate x every remaining prunable weight, ignored layers included) + 1 "
                                         "per level)",
                            flag="prune_counting", choices=COUNTINGS, preset=True,
                            applies=("with a pooled strategy (not layerwise)",
                                     lambda c: c.pruning.strategy != "layerwise"))
    # How a density becomes a count wherever ticketlab prunes (every allocation, each round of a schedule).
    ROUNDINGS = ("nearest", "synaptic-flow")
    rounding: str = setting("nearest", "how a density d becomes the weights a group of n keeps: nearest (round(d "
                                       "n), halves up) or synaptic-flow (n - int((1 - d) n): Synaptic-Flow's and "
                                       "sparse_to_sparse's kthvalue count: ceil(d n), one more weight where d n "
                                       "has a fraction in (0, 1/2))",
                            flag="prune_rounding", choices=ROUNDINGS)

    def __post_init__(self) -> None:  # a TOML or Python value outside the choices, said before anything runs
        for name, allowed in (("counting", self.COUNTINGS), ("rounding", self.ROUNDINGS)):
            if getattr(self, name) not in allowed:
                raise TicketlabError(f"pruning.{name} must be one of {', '.join(allowed)}, "
                                     f"got {getattr(self, name)!r}")


@dataclass(frozen=True)
class LotteryHparams:
    levels: int = setting(0, "pruning rounds after the dense level 0")
    rewind_step: int = setting(0, "rewind survivors to this step of the dense run (0: the LTH reset to "
                                  "initialisation; k > 0: late rewinding)", steps=True,
                               applies=("with --retrain rewind, lr_rewind or finetune",
                                        lambda c: c.lottery.retrain != "scratch"))
    retrain: str = setting("rewind", "how pruned levels retrain (Renda et al. 2020): rewind the survivors to "
                                     "step k's weights and train from k (the LTH); lr_rewind: keep the trained "
                                     "weights, replay the schedule from k; finetune: keep them, train T - k steps "
                                     "at --finetune-lr; scratch: fresh random weights, the whole schedule",
                           choices=RETRAIN_MODES)
    finetune_lr: float | None = setting(None, "LR of --retrain finetune (unset: the schedule's last)",
                                        applies=("with --retrain finetune", lambda c: c.lottery.retrain == "finetune"))


@dataclass(frozen=True)
class RunConfig:
    kind: str = setting("lottery", "lottery | train: set by the command, not a flag", cli=False)
    seed: int = setting(0, "replicate seed: initial weights, data order and every draw derive from it")
    dataset: DatasetHparams = setting(default_factory=DatasetHparams, help="the [dataset] table")
    model: ModelHparams = setting(default_factory=ModelHparams, help="the [model] table")
    training: TrainingHparams = setting(default_factory=TrainingHparams, help="the [training] table")
    pruning: PruningHparams = setting(default_factory=PruningHparams, help="the [pruning] table")
    lottery: LotteryHparams = setting(default_factory=LotteryHparams, help="the [lottery] table")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MAX_WIDTH = 1e4  # model.width beyond this is a typo: 300 x 10^4 hidden units

SECTIONS = {
    "dataset": DatasetHparams,
    "model": ModelHparams,
    "training": TrainingHparams,
    "pruning": PruningHparams,
    "lottery": LotteryHparams,
}
# Fields that hold a number of steps (declared with steps=True): they accept "500", "500it", "2ep" or "1ep10it".
STEP_FIELDS = {f.name for cls in SECTIONS.values() for f in fields(cls) if setting_of(f).steps}
# Sane bounds: a step count or a number of levels beyond these is a typo, not an experiment (10^9 steps of
# the smallest network take years on a CPU; every built-in model is pruned to nothing within ~150 levels at
# the paper's rates, and `configure.check_model` says exactly where).
MAX_STEPS = 10**9
MAX_LEVELS = 10**6


# ---- Durations -------------------------------------------------------------------------------------------

_STEP_RE = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*(?:it)?)?\s*$")


def parse_steps(value: Any, steps_per_epoch: int | Callable[[], int], name: str) -> int:
    """'500' | '500it' | '2ep' | '1ep10it' -> a whole number of optimizer steps.

    `steps_per_epoch` may be a function, called only when `value` counts epochs (it may raise when the
    number is unknowable)."""
    if isinstance(value, bool):
        raise TicketlabError(f"{name}: expected a number of steps, got {value!r}")
    if isinstance(value, int):
        steps = value
    else:
        m = _STEP_RE.match(str(value))
        if not m or (m.group(1) is None and m.group(2) is None):
            raise TicketlabError(f"{name}: cannot read {value!r} as steps (use e.g. 500, 500it, 2ep, 1ep10it)")
        epochs, steps = int(m.group(1) or 0), int(m.group(2) or 0)
        if epochs and callable(steps_per_epoch):
            try:
                steps_per_epoch = steps_per_epoch()
            except TicketlabError as e:
                raise TicketlabError(f"{name}: {value!r} counts epochs, but {e}") from None
        if epochs:
            steps += epochs * steps_per_epoch
    if steps < 0:
        raise TicketlabError(f"{name}: must not be negative, got {value!r}")
    if steps > MAX_STEPS:
        raise TicketlabError(f"{name}: {value!r} is {steps:,} steps, more than the {MAX_STEPS:,} allowed "
                             "(a typo? e.g. 50000, 50000it, 20ep)")
    return steps


# ---- Building a config from layers of overrides ------------------------------------------------------------


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TicketlabError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TicketlabError(f"malformed config file {p}: {e}") from None


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; sections are merged key by key. A section that is not a table (TOML `training =
    "fast"`) is an error here, before a later layer's table could hide it."""
    out: dict[str, Any] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            raise TicketlabError(f"config layers must be tables of sections, got {layer!r}")
        for key, value in layer.items():
            if key in SECTIONS and not isinstance(value, dict):
                raise TicketlabError(f"config section [{key}] must be a table, got {value!r}")
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def config_from_layers(layers: dict[str, Any], steps_per_epoch: int | Callable[[], int]) -> RunConfig:
    """Merged layers (defaults are implied) -> a validated RunConfig. `steps_per_epoch` converts epoch
    durations; a function is called only if some duration counts epochs. Presets are the caller's
    business: see `ticketlab.configure.build_config`."""
    check_top_level(layers)
    sections = {name: _build_section(cls, layers.get(name, {}), name, steps_per_epoch)
                for name, cls in SECTIONS.items()}
    config = RunConfig(kind=str(layers.get("kind", "lottery")), seed=_coerce(layers.get("seed", 0), int, "seed"),
                       **sections)
    validate(config)
    return config


def check_top_level(layers: dict[str, Any]) -> None:
    unknown = set(layers) - set(SECTIONS) - {"kind", "seed"}
    if unknown:
        raise TicketlabError(f"unknown config key(s): {', '.join(sorted(unknown))} "
                             f"(expected seed, kind or sections {', '.join(SECTIONS)})")


def _build_section(cls: type, values: Any, section: str, steps_per_epoch: int | Callable[[], int]) -> Any:
    if not isinstance(values, dict):
        raise TicketlabError(f"config section [{section}] must be a table, got {values!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise TicketlabError(f"unknown key(s) in [{section}]: {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, value in values.items():
        where = f"{section}.{key}"
        if key in STEP_FIELDS:
            if key == "milestones":
                if not isinstance(value, (list, tuple)):
                    raise TicketlabError(f"{where}: expected a list of steps, got {value!r}")
                kwargs[key] = tuple(parse_steps(v, steps_per_epoch, where) for v in value)
            else:
                kwargs[key] = parse_steps(value, steps_per_epoch, where)
        elif key == "layer_rates":
            items = value.items() if isinstance(value, dict) else value
            try:
                kwargs[key] = tuple(sorted((str(k), _coerce(v, float, where)) for k, v in items))
            except (TypeError, ValueError):
                raise TicketlabError(f"{where}: expected a table of layer name = rate, got {value!r}") from None
        else:
            kwargs[key] = _coerce(value, hints[key], where)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TicketlabError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, get_args(hint)[0], where) for v in value)
    if origin is not None:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "1", "yes"}:
                return True
            if str(value).lower() in {"false", "0", "no"}:
                return False
            raise ValueError
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if hint in (int, float) and isinstance(value, bool):
            raise ValueError
        return hint(value)
    except (TypeError, ValueError):
        raise TicketlabError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None


def validate(c: RunConfig) -> None:
    """Every check that needs no registry. pruning.strategy names an allocation of the pruning registry,
    which sits above this module: `ticketlab.configure.build_config` checks it."""

    check_seed(c.seed)
    check_seed(c.dataset.split_seed, "dataset.split_seed")
    check_seed(c.dataset.noise_seed, "dataset.noise_seed")
    t, p, lot = c.training, c.pruning, c.lottery
    # The first failing check is said. Comparisons are written so that NaN fails them; infinities are refused
    # where a number must be finite. Messages are built only for the check that fails.
    checks = [
        (c.kind in ("lottery", "train"), lambda: f"kind must be lottery or train, got {c.kind!r}"),
        (c.dataset.val_size >= 0, lambda: f"dataset.val_size must be >= 0, got {c.dataset.val_size}"),
        (0 <= c.model.dropout < 1, lambda: f"model.dropout must be in [0, 1), got {c.model.dropout}"),
        (c.dataset.augment in AUGMENTS, lambda: f"dataset.augment must be one of {', '.join(AUGMENTS)}, "
                                                f"got {c.dataset.augment!r}"),
        (c.dataset.subsample >= 0, lambda: f"dataset.subsample must be >= 0 (0: every training example), "
                                           f"got {c.dataset.subsample}"),
        (0 <= c.dataset.label_noise <= 1, lambda: f"dataset.label_noise must be in [0, 1] (a fraction of the "
                                                  f"training labels), got {c.dataset.label_noise}"),
        (c.dataset.noise_type in NOISE_TYPES, lambda: f"dataset.noise_type must be one of {', '.join(NOISE_TYPES)}, "
                                                      f"got {c.dataset.noise_type!r}"),
        (0 < c.model.width <= MAX_WIDTH, lambda: f"model.width (a multiplier of every hidden width) must be in "
                                                 f"(0, {MAX_WIDTH:g}], got {c.model.width}"),
        (t.optimizer in OPTIMIZERS, lambda: f"training.optimizer must be adam or sgd, got {t.optimizer!r}"),
        (t.loss in LOSSES, lambda: f"training.loss must be cross_entropy or mse, got {t.loss!r}"),
        (_positive(t.lr), lambda: f"training.lr must be > 0 and at most {FLOAT32_MAX:.3g} (float32), got {t.lr}"),
        (t.batch_size >= 1, lambda: f"training.batch_size must be >= 1, got {t.batch_size}"),
        (t.train_steps >= 1, lambda: f"training.train_steps must be >= 1, got {t.train_steps}"),
        (t.eval_every >= 1, lambda: f"training.eval_every must be >= 1, got {t.eval_every}"),
        (t.warmup_steps < t.train_steps, lambda: f"training.warmup_steps ({t.warmup_steps:,}) must be below "
                                                 f"training.train_steps ({t.train_steps:,}): the LR would never "
                                                 "reach training.lr"),
        (t.test_every >= 0, lambda: f"training.test_every must be >= 0, got {t.test_every}"),
        (t.eval_every < 1 or t.test_every % t.eval_every == 0,  # eval_every < 1 is said just above
         lambda: f"training.test_every ({t.test_every}) must be 0 or a multiple of eval_every ({t.eval_every})"),
        (0 <= t.momentum < 1, lambda: f"training.momentum must be in [0, 1), got {t.momentum}"),
        (not t.nesterov or (t.optimizer == "sgd" and t.momentum > 0),
         lambda: "training.nesterov needs sgd with momentum > 0"),
        (0 <= t.weight_decay <= FLOAT32_MAX, lambda: f"training.weight_decay must be >= 0 and at most "
                                                     f"{FLOAT32_MAX:.3g} (float32), got {t.weight_decay}"),
        (_positive(t.gamma), lambda: f"training.gamma (the LR factor at each milestone) must be > 0 and at "
                                     f"most {FLOAT32_MAX:.3g} (float32), got {t.gamma}"),
        (list(t.milestones) == sorted(t.milestones), lambda: "training.milestones must be increasing"),
        (lot.levels >= 0, lambda: f"lottery.levels must be >= 0, got {lot.levels}"),
        (lot.levels <= MAX_LEVELS, lambda: f"lottery.levels must be at most {MAX_LEVELS:,}, got {lot.levels:,}"),
        (lot.retrain in RETRAIN_MODES,
         lambda: f"lottery.retrain must be one of {', '.join(RETRAIN_MODES)}, got {lot.retrain!r}"),
        (lot.finetune_lr is None or _positive(lot.finetune_lr),
         lambda: f"lottery.finetune_lr must be > 0 and at most {FLOAT32_MAX:.3g} (float32), got {lot.finetune_lr}"),
        (lot.rewind_step < t.train_steps,
         lambda: f"lottery.rewind_step ({lot.rewind_step}) must be below training.train_steps ({t.train_steps})"),
    ]
    rates = [("pruning.rate", p.rate), ("pruning.conv_rate", p.conv_rate), ("pruning.output_rate", p.output_rate)]
    rates += [(f"pruning.layer_rates.{k}", v) for k, v in p.layer_rates]
    checks += [(r is None or 0 <= r < 1,
                lambda name=name, r=r: f"{name} must be in [0, 1) (a fraction of the surviving weights), got {r}")
               for name, r in rates]
    for ok, message in checks:
        if not ok:
            raise TicketlabError(message())


FLOAT32_MAX = 3.4028234663852886e38  # rates multiply float32 weights: a larger one is an overflow, not a number


def _positive(x: float) -> bool:
    """A number > 0 that a float32 holds (NaN, infinities and overflowing values fail)."""
    return 0 < x <= FLOAT32_MAX

"""Flags generated from typed dataclasses (settings.setting), and the common runtime flags.

A field declared with `setting(...)` becomes one flag: its name (the field's, or Setting.flag), type (from
the annotation), help (Setting.help, the default, the choices), choices (read from the registries now, as
the parser is built) and earlier spellings (Setting.old_flags: accepted with a one-line notice). A nested
dataclass field (RunConfig.training) contributes its fields. Every flag defaults to None: a flag left unset
leaves the model's preset and the TOML file alone, so TOML keys and flags are the same fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Iterable, get_args, get_origin, get_type_hints

from ..config import RunConfig, _coerce, load_toml, merge, parse_steps
from ..configure import build_config
from ..errors import TicketlabError
from ..settings import Setting, flag_name, setting_of


@dataclass(frozen=True)
class FlagField:
    """One field of a spec as a flag: where its value goes (a path of field names) and what declared it."""

    path: tuple[str, ...]  # ("training", "train_steps"); ("seed",) for a top-level field
    field: dataclasses.Field
    hint: Any  # the field's type annotation
    setting: Setting

    @property
    def dest(self) -> str:  # the argparse destination: the flag with _ for -
        return flag_name(self.field).replace("-", "_")

    @property
    def flag(self) -> str:
        return "--" + flag_name(self.field)

    @property
    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else \
            None if f.default is dataclasses.MISSING else f.default


def at_least_one(text: str) -> int:
    """argparse type of a count that must be a whole number >= 1 (replicates, draws, threads)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c'); a tuple, so argparse's `--flag=--` bug (it gives []) stays detectable."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def setting_fields(cls: type, prefix: tuple[str, ...] = ()) -> list[FlagField]:
    """Every field of `cls`, nested dataclasses flattened; a plain field (no Setting) is an error: every
    field of a spec is declared with settings.setting."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        s = setting_of(f)
        if s is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with settings.setting(...)")
        if dataclasses.is_dataclass(hints[f.name]):
            out += setting_fields(hints[f.name], (*prefix, f.name))
        else:
            out.append(FlagField((*prefix, f.name), f, hints[f.name], s))
    return out


def add_setting_flags(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = ()) -> list[FlagField]:
    """A flag for each field of `cls` with cli=True, except those whose dotted path (or a prefix of it, a
    section) is in `skip`. The fields are recorded on the parser's namespace (`_flag_fields`) for
    `values_from_args`."""
    skip = set(skip)
    flagged = [ff for ff in setting_fields(cls) if ff.setting.cli
               and not any(".".join(ff.path[:i]) in skip for i in range(1, len(ff.path) + 1))]
    for ff in flagged:
        _add_flag(parser, ff)
    parser.set_defaults(_flag_fields=[*(parser.get_default("_flag_fields") or []), *flagged])
    return flagged


def _add_flag(parser: argparse.ArgumentParser, ff: FlagField) -> None:
    s, hint = ff.setting, _unwrap(ff.hint)
    names = [ff.flag, *("--" + old.replace("_", "-") for old in s.old_flags)]
    kwargs: dict[str, Any] = {"dest": ff.dest, "default": None, "help": _help(s, ff.default)}
    if hint is bool:
        parser.add_argument(*names, action=_RenamedBool, **kwargs)
        return
    if s.metavar or s.steps:
        kwargs["metavar"] = s.metavar or "STEPS"
    if get_origin(hint) is tuple:
        kwargs["metavar"] = kwargs.get("metavar", ff.dest.upper()) + ",.."
        kwargs["type"] = comma_list
    elif s.steps:
        kwargs["type"] = str  # a duration: "500", "500it", "2ep" (config.parse_steps reads it)
    else:
        kwargs["type"] = hint
    choices = s.choice_list()
    if choices is not None and s.check_choices:
        kwargs["choices"] = choices
    parser.add_argument(*names, action=_Renamed, **kwargs)


def _unwrap(hint: Any) -> Any:
    """X | None -> X."""
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if get_origin(hint) is not tuple and len(args) == 1 else hint


def _shown(default: Any) -> str:
    """A default as help shows it: unset, none (an empty list), on/off, a,b or the value."""
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    return str(default)


def _help(s: Setting, default: Any) -> str:
    shown = _shown(default)
    text = s.help
    choices = s.choice_list()
    if choices is not None and not s.check_choices:
        text += f"; one of: {', '.join(choices)}"
    text += f" (default: the model's preset, else {shown})" if s.preset else f" (default: {shown})"
    return text.replace("%", "%%")


def _notice(action: argparse.Action, option_string: str | None) -> None:
    if option_string in getattr(action, "old", ()):
        now = action.option_strings[0]
        if option_string.startswith("--no-"):  # a flag's negation: --no-old is now --no-new
            now = "--no-" + now[2:]
        sys.stderr.write(f"ticketlab: notice: {option_string} is now {now}; the old spelling goes in the next "
                         "release\n")


class _Renamed(argparse.Action):
    """Stores the value; an earlier spelling (Setting.old_flags) also prints one line on stderr."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.old = tuple(option_strings[1:])

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        _notice(self, option_string)
        setattr(namespace, self.dest, values)


class _RenamedBool(argparse.BooleanOptionalAction):
    """--x / --no-x; unset: None (the preset's value stands)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.old = tuple(self.option_strings[2:])  # [--x, --no-x, --old, --no-old]

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        _notice(self, option_string)
        super().__call__(parser, namespace, values, option_string)


def values_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags given on the command line, as config layers: {"training": {"lr": 0.1}, "seed": 3}."""
    out: dict[str, Any] = {}
    for ff in getattr(args, "_flag_fields", None) or []:
        value = getattr(args, ff.dest, None)
        if value is not None:
            table = out
            for name in ff.path[:-1]:
                table = table.setdefault(name, {})
            table[ff.path[-1]] = value
    return out


# ---- A run's config: RunConfig's fields as flags, a TOML file below them -----------------------------------

def add_config_flags(parser: argparse.ArgumentParser, lottery: bool, skip: Iterable[str] = ()) -> None:
    """--config FILE and a flag per RunConfig field; without `lottery`, no [pruning]/[lottery] flags."""
    parser.add_argument("--config", metavar="FILE", help="TOML file with [dataset] [model] [training] [pruning] "
                        "[lottery] tables (the same fields as these flags); flags override it")
    add_setting_flags(parser, RunConfig, skip=[*skip, *(() if lottery else ("pruning", "lottery"))])


def config_layers(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The TOML file and the flags as given, merged, unresolved (durations still e.g. "2ep")."""
    layers: dict[str, Any] = load_toml(args.config) if getattr(args, "config", None) else {}
    return merge(layers, {"kind": kind}, values_from_args(args))


def refuse_given(layers: dict[str, Any], decided: dict[str, str]) -> None:
    """Settings a command decides itself ("section.field" -> how), given anyway in flags or TOML: one line each
    instead of a value silently ignored."""
    for key, how in decided.items():
        section, name = key.split(".")
        if name in (layers.get(section) or {}):
            raise TicketlabError(f"--{name.replace('_', '-')} ({key}) has no effect here: {how}")


def spec_from_args(cls: type, args: argparse.Namespace) -> Any:
    """A spec dataclass from its generated flags (add_setting_flags(parser, cls)); unset fields keep their
    defaults. Values are coerced to the field's type; a duration counts steps (no epochs: no data set); a
    RunConfig field is built as a run's config is (defaults <- the model's preset <- its flags)."""
    return _build(cls, values_from_args(args))


def _build(cls: type, values: dict[str, Any]) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint, flag = hints[f.name], "--" + flag_name(f)
        if hint is RunConfig:
            kwargs[f.name] = build_config(values.get(f.name, {}))
        elif f.name not in values:
            continue
        elif dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, values[f.name])
        elif setting_of(f).steps:
            kwargs[f.name] = _coerce(parse_steps(values[f.name], _no_epochs(flag), flag), hint, flag)
        else:
            kwargs[f.name] = _coerce(values[f.name], hint, flag)
    return cls(**kwargs)


def _no_epochs(flag: str):  # noqa: ANN202
    def raise_() -> int:
        raise TicketlabError(f"{flag} counts steps here (no data set gives an epoch's size)")
    return raise_


# ---- The common runtime flags: how to run, never what (read by runtime.launch_from_args) -------------------

def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--no-download", action="store_true", help="never download missing data")
    p.add_argument("--out", default=None, help="run store root (default ./runs or $TICKETLAB_RUNS)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--threads", type=at_least_one, default=1, help="torch threads per job (default 1). Results "
                   "are stored per thread count: other counts change their last bits")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="local: processes on this "
                   "machine (--workers); ray: one Ray task per job on a Ray cluster (pip install 'ticketlab[ray]')")
    p.add_argument("--address", default=None, help="with --executor ray: the cluster, auto or HOST:PORT (default: "
                   "a Ray instance started here with --workers CPUs); --out must be on a file system every "
                   "machine of the cluster sees at the same path")
    p.add_argument("--workers", default="auto", help="parallel worker processes for independent jobs "
                   "(replicates, controls); auto: one per core when there are such jobs, else 1")
    p.add_argument("--population", default="auto", help="auto (default), off or N: ready jobs of one model and "
                   "recipe (replicates, controls, methods at one level) train as one population of up to N "
                   "networks in this process; auto: on CUDA, as many as fit; on a CPU off (measured no faster)")
    p.add_argument("--checkpoint-every", type=at_least_one, default=1000,
                   help="steps between resumable checkpoints (default 1000)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_run_flags(p: argparse.ArgumentParser, lottery: bool, skip: Iterable[str] = (), controls: bool = False
                  ) -> None:
    """The flags of a command that trains: the config's fields (pruning and lottery ones with `lottery`),
    the controls of a study (`controls`: only the commands that train them have the flags, so elsewhere they
    are refused by the parser, not ignored), --replicates and the runtime flags."""
    add_config_flags(p, lottery, skip)
    if controls:
        p.add_argument("--controls", help="comma list of reinit, sign_reinit, random_prune, shuffle, noise, "
                       "oneshot: branches of each level trained like the ticket")
        p.add_argument("--control-reps", type=at_least_one, default=1, help="draws of each random control per "
                       "replicate (oneshot is deterministic: always one)")
        p.add_argument("--noise-scales", help="noise control scales x layer init std (default 0.5,1,2,3)")
        p.add_argument("--control-levels", help="levels to branch controls from: all (default) or e.g. 1-3,5")
    p.add_argument("--replicates", type=at_least_one, default=1, help="seeds seed, seed+1, ... (default 1)")
    add_runtime_flags(p)

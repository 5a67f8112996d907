"""A setting is named once: a dataclass field that carries its help, flag and choices.

Every typed spec (the config sections in config.py, each experiment kind's spec) declares its fields with
`setting(...)`; the CLI's flags, the TOML keys, the help text and the choices listed in it are all generated
from these fields (cli/flags.py), so help never goes stale and TOML and flags cover the same fields.

    @dataclass(frozen=True)
    class TrainingHparams:
        lr: float = setting(1.2e-3, "learning rate", preset=True)
        optimizer: str = setting("adam", "the optimizer", choices=("adam", "sgd"))

Choices may be a function (called when the help is built), so a registry's names are read when a parser is
made, after every registration: `choices=lambda: sorted(MODELS)`. A module below the registries (config.py
sits below models, data and pruning) names them with `registry("ticketlab.models:MODEL_NAMES")`, resolved
only when the help is built, so it never imports upward.

A setting that has an effect only with another one declares it (`applies=`), so one rule refuses it where it
would be silently ignored (`--momentum` with Adam) instead of a list of special cases.

Metadata never enters a result's identity: identity hashes `dataclasses.asdict` of the values alone.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

Choices = tuple[str, ...] | Callable[[], Iterable[str]] | None
KEY = "ticketlab"  # the key of a field's metadata that holds its Setting


@dataclass(frozen=True)
class Setting:
    help: str
    flag: str | None = None  # the flag's name without dashes; None: the field's name with - for _
    choices: Choices = None  # the values allowed (listed in help)
    # True: the flag parser refuses other values; False: listed only, the library checks (a registry of name
    # families such as mlp_<w1>_<w2>_.., or one a user's code may add to, says its own one-line error)
    check_choices: bool = True
    metavar: str | None = None
    old_flags: tuple[str, ...] = ()  # earlier spellings: accepted for one release, with a one-line notice
    cli: bool = True  # False: TOML/Python only (say why in the help), e.g. a table of per-layer rates
    steps: bool = False  # a duration: "500", "500it", "2ep", "1ep10it" (config.parse_steps)
    preset: bool = False  # a model's preset may set it: help says "(default: the model's preset, else ...)"
    # where the setting has an effect: (the condition in words, a test of the whole RunConfig). A value the
    # user gave where it has none is refused in one line (configure.check_applies); one a preset gave is
    # put back to the default, so it never enters an identity
    applies: tuple[str, Callable[[Any], bool]] | None = None

    def choice_list(self) -> list[str] | None:
        if self.choices is None:
            return None
        values = self.choices() if callable(self.choices) else self.choices
        return [str(v) for v in values]


def setting(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
            **options: Any) -> Any:
    """A dataclasses.field whose metadata holds a Setting(help, **options)."""
    meta = {KEY: Setting(help=help, **options)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def registry(where: str) -> Callable[[], list[str]]:
    """Choices read from a registry named "module:attribute" (a dict, list or Registry of names), looked up
    each time they are listed: every registration made before the help is built shows."""
    module, _, attribute = where.partition(":")

    def names() -> list[str]:
        return list(getattr(importlib.import_module(module), attribute))

    names.__qualname__ = f"registry({where!r})"
    return names


def setting_of(f: dataclasses.Field) -> Setting | None:
    """The Setting a field was declared with, or None for a plain field."""
    return f.metadata.get(KEY)


def flag_name(f: dataclasses.Field) -> str:
    s = setting_of(f)
    return (s.flag if s is not None and s.flag else f.name).replace("_", "-")

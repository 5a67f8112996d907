"""The one registry type behind SCORERS, ALLOCATIONS and SCHEDULES: a name -> function dict whose
decorator refuses a duplicate name, and whose look-up accepts a registered name or a callable.

Every axis of pruning is swappable the same way, so a user learns one rule: write a function with the
axis' signature and either pass it directly or register it under a name usable from configs.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from ..errors import TicketlabError

F = TypeVar("F", bound=Callable)


class Registry(dict):
    """name -> function of one axis ('scorer', 'allocation', 'schedule')."""

    def __init__(self, axis: str):
        super().__init__()
        self.axis = axis

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: `@register_scorer("snip")` adds the function under "snip"; a taken name is a ValueError
        (silently replacing a built-in would change what every config naming it means)."""
        def add(fn: F) -> F:
            if name in self:
                raise ValueError(f"a {self.axis} named {name!r} is already registered")
            self[name] = fn
            return fn
        return add

    def resolve(self, name_or_fn: str | Callable) -> Callable:
        """The function itself when given a callable; the registered one when given a name."""
        if callable(name_or_fn):
            return name_or_fn
        if name_or_fn not in self:
            raise TicketlabError(f"unknown {self.axis} {name_or_fn!r}; registered: {', '.join(sorted(self))}")
        return self[name_or_fn]

    def name_of(self, name_or_fn: str | Callable) -> str:
        """For messages: the name given, or the function's own name."""
        return name_or_fn if isinstance(name_or_fn, str) else getattr(name_or_fn, "__name__", repr(name_or_fn))

"""Sharing rules and market clearing: one module per rule, behind one signature.

Every rule is a frozen dataclass of its parameters with ``NAME``, ``VERSION`` and a
pure method ``allocate(interval) -> Allocation``: no state is kept between calls and
nothing but its arguments decides the result. :data:`RULES` maps the names used in
``community.toml`` (``[sharing] mode``) to the classes; registering a name twice is
an error.
"""

from __future__ import annotations

from typing import Protocol

from settlement.allocation import Allocation, IntervalInput


class Rule(Protocol):
    """What the engine needs of a rule."""

    NAME: str
    VERSION: int

    def allocate(self, interval: IntervalInput) -> Allocation:
        """The allocation of one interval."""
        ...


RULES: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator adding a rule to :data:`RULES` under its ``NAME``.

    Raises:
        ValueError: the name is already registered.
    """
    name = cls.NAME  # type: ignore[attr-defined]
    if name in RULES:
        raise ValueError(f"sharing rule {name!r} registered twice")
    RULES[name] = cls
    return cls


def load_all() -> dict[str, type]:
    """Import every rule module (each registers itself) and return :data:`RULES`."""
    from settlement.rules import (  # noqa: F401
        cascade,
        market,
        pro_rata,
        schedule,
        static_keys,
        water_filling,
    )
    return RULES

"""The one small interface every meter driver implements, and the registry of drivers.

A *driver* is a protocol (Modbus RTU, Modbus TCP, DSMR P1, ...). It is registered once
under its name with :func:`register`; registering a name twice is an error. The
agent and the technician's CLI only ever see :class:`MeterSpec` (what the config says)
and :class:`Meter` (something that can be probed and read), never a protocol module.
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ledger import Reading
from ledger.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """Where a meter is and how to talk to it; built from config or CLI flags.

    Only the fields a protocol needs are used by it; validation happens in the
    driver's factory, which raises :class:`ConfigError` naming the field.
    """

    meter_id: str
    protocol: str
    """Registered driver name: ``modbus-rtu``, ``modbus-tcp``, ``modbus-rtu-over-tcp``,
    ``sunspec-tcp``, ``sunspec-rtu``, ``dsmr-p1``, ``iec62056-21``."""
    port: str | None = None
    """Serial device (``/dev/ttyUSB0``) for serial protocols."""
    host: str | None = None
    tcp_port: int | None = None
    baudrate: int | None = None
    parity: str | None = None
    """``N``, ``E`` or ``O``."""
    stopbits: int | None = None
    bytesize: int | None = None
    unit: int | None = None
    """Modbus unit id (1..247)."""
    profile: str | None = None
    """Meter profile name (``eastron-sdm630``) or path of a profile file."""
    timeout_s: float = 1.0
    options: dict[str, object] = field(default_factory=dict)
    """Protocol-specific extras (e.g. DSMR ``variant``), documented by each driver."""

    @property
    def bus(self) -> str:
        """Name of the bus this meter sits on (meters on one bus are polled in turn)."""
        if self.port:
            return self.port
        if self.host:
            return f"{self.host}:{self.tcp_port}" if self.tcp_port else self.host
        return self.meter_id


class Meter(abc.ABC):
    """One meter that can be probed and read. Implementations are async.

    Every failure surfaces as a :class:`~ledger.errors.DeviceError` (or a subclass)
    naming the bus, unit and register; implementations never let a protocol
    library's own exception escape.
    """

    spec: MeterSpec

    @abc.abstractmethod
    async def probe(self) -> bool:
        """True if a device of the expected kind answers; False if it answers otherwise.

        Raises:
            DeviceError: nothing usable answered (timeout, port missing, ...).
        """

    @abc.abstractmethod
    async def read(self, now_ms: int) -> list[Reading]:
        """Read every quantity once. ``now_ms`` is the gateway time for readings that
        carry no meter timestamp (their clock source is then ``GATEWAY``).

        Raises:
            DeviceError: the read failed; nothing partial is returned.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the transport (a shared bus is closed by its last user)."""


def check_options(spec: MeterSpec, known: Collection[str]) -> None:
    """Refuse option keys a driver does not know (a misspelled option would otherwise
    be ignored and its default used without a word).

    Raises:
        ConfigError: ``options`` is not a table, or names an unknown key
            (``options.<key>``, with the closest known key and the full list).
    """
    if not isinstance(spec.options, dict):
        raise ConfigError("options", f"must be a table of option = value, not "
                          f"{type(spec.options).__name__}")
    names = sorted(known)
    for key in spec.options:
        if key not in known:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            guess = f"did you mean {close[0]!r}? " if close else ""
            listed = ", ".join(names) if names else f"none ({spec.protocol} takes no options)"
            raise ConfigError(f"options.{key}", f"unknown option; {guess}known: {listed}")


DriverFactory = Callable[[MeterSpec], Meter]

_REGISTRY: dict[str, DriverFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, factory: DriverFactory, description: str) -> None:
    """Register a driver factory under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"driver {name!r} is already registered")
    _REGISTRY[name] = factory
    _DESCRIPTIONS[name] = description


def drivers() -> dict[str, str]:
    """Registered driver names with their one-line descriptions."""
    _load_builtin()
    return dict(_DESCRIPTIONS)


def open_meter(spec: MeterSpec) -> Meter:
    """Create the meter for ``spec`` through its driver's factory.

    Raises:
        ConfigError: unknown protocol, or a field the driver needs is missing or wrong.
    """
    _load_builtin()
    try:
        factory = _REGISTRY[spec.protocol]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError("protocol", f"unknown protocol {spec.protocol!r} (known: {known})"
                          ) from None
    return factory(spec)


def _load_builtin() -> None:
    """Import the built-in driver modules once; each registers itself on import."""
    from drivers import registry  # noqa: F401  (the one place listing built-in drivers)

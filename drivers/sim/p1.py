"""A DSMR P1 port simulator: real-format telegrams with correct CRCs over a pty.

:func:`build_telegram` (pure) writes one telegram of a DSMR version or national
variant from a :class:`P1State`; :class:`P1Simulator` pushes them to the master end of
a pseudo-terminal whose slave path a :class:`~drivers.p1.P1Meter` opens. Energy and
gas counters rise with simulated time (one variant interval per telegram), and the
meter time advances with them.

With ``P1SimConfig.key`` (variant ``lu``) each telegram is sent encrypted as a
Luxembourg Smarty frame (:func:`drivers.smarty.encrypt`).

Fault modes (``P1SimConfig.faults``, applied to every ``fault_every``-th telegram):
``bad-crc`` (one CRC digit changed; with a key, one ciphertext bit), ``garbage``
(noise bytes before the telegram), ``truncated`` (the telegram cut in half, the next
starts at once), ``silence`` (nothing is sent at all).
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from dataclasses import dataclass, field

from drivers import smarty
from drivers.dsmr import VARIANTS, with_crc
from drivers.obisvalue import CEST, CET, is_eu_summer_time
from drivers.sim.serialpty import PtySimulator, write_all

FAULTS = frozenset({"bad-crc", "garbage", "truncated", "silence"})


@dataclass
class P1State:
    """What the simulated meter measures. Energies in Wh, gas in dm3 (litres)."""

    utc: dt.datetime = field(default_factory=lambda: dt.datetime(2024, 7, 1, 10, 0, 0))
    """Meter time as naive UTC."""
    import_wh: list[int] = field(default_factory=lambda: [1_234_567, 2_345_678])
    export_wh: list[int] = field(default_factory=lambda: [345_678, 456_789])
    tariff: int = 2
    import_w: int = 1_193
    export_w: int = 0
    phase_v_dv: tuple[int, int, int] = (2301, 2302, 2303)
    """Voltages in 0.1 V."""
    phase_a: tuple[int, int, int] = (2, 1, 3)
    gas_dm3: int = 12_785_123
    gas_utc: dt.datetime = field(default_factory=lambda: dt.datetime(2024, 7, 1, 9, 55, 0))
    _import_mwh: int = 0
    _export_mwh: int = 0

    def advance(self, seconds: int, gas_dm3: int = 3) -> None:
        """Let ``seconds`` pass: energy grows by power x time (exact, in mWh)."""
        self.utc += dt.timedelta(seconds=seconds)
        self._import_mwh += self.import_w * seconds * 1000 // 3600
        self._export_mwh += self.export_w * seconds * 1000 // 3600
        t = self.tariff - 1
        self.import_wh[t] += self._import_mwh // 1000
        self.export_wh[t] += self._export_mwh // 1000
        self._import_mwh %= 1000
        self._export_mwh %= 1000
        if self.utc - self.gas_utc >= dt.timedelta(minutes=5):
            self.gas_utc = self.utc.replace(second=0, microsecond=0)
            self.gas_dm3 += gas_dm3


def meter_time(utc: dt.datetime, *, flag: bool = True) -> str:
    """Naive UTC -> ``YYMMDDhhmmssX`` in CET/CEST (``X`` = S or W, omitted if not flag)."""
    summer = is_eu_summer_time(utc)
    local = utc + (CEST if summer else CET)
    text = local.strftime("%y%m%d%H%M%S")
    return text + ("S" if summer else "W") if flag else text


def _kwh(wh: int, whole: int = 6) -> str:
    return f"{wh // 1000:0{whole}d}.{wh % 1000:03d}*kWh"


def _kw(w: int) -> str:
    return f"{w // 1000:02d}.{w % 1000:03d}*kW"


def _lines_v22(s: P1State, header: str) -> list[str]:
    gas_hour = s.gas_utc.replace(minute=0, second=0)
    return [
        header, "",
        "0-0:96.1.1(4B384547303034303436333935353037)",
        f"1-0:1.8.1({_kwh(s.import_wh[0], 5)})", f"1-0:1.8.2({_kwh(s.import_wh[1], 5)})",
        f"1-0:2.8.1({_kwh(s.export_wh[0], 5)})", f"1-0:2.8.2({_kwh(s.export_wh[1], 5)})",
        f"0-0:96.14.0({s.tariff:04d})",
        f"1-0:1.7.0({s.import_w // 1000:04d}.{s.import_w % 1000 // 10:02d}*kW)",
        f"1-0:2.7.0({s.export_w // 1000:04d}.{s.export_w % 1000 // 10:02d}*kW)",
        "0-0:17.0.0(0999.00*kW)", "0-0:96.3.10(1)", "0-0:96.13.1()", "0-0:96.13.0()",
        "0-1:24.1.0(3)", "0-1:96.1.0(3238313031353431303031333733313130)",
        f"0-1:24.3.0({meter_time(gas_hour, flag=False)})(00)(60)(1)(0-1:24.2.1)(m3)",
        f"({s.gas_dm3 // 1000:05d}.{s.gas_dm3 % 1000:03d})",
        "0-1:24.4.0(1)",
    ]


def _lines_v4(s: P1State, header: str, version: str) -> list[str]:
    v5 = version == "50"
    lines = [
        header, "", f"1-3:0.2.8({version})", f"0-0:1.0.0({meter_time(s.utc)})",
        "0-0:96.1.1(4530303331303033323837373831323136)",
        f"1-0:1.8.1({_kwh(s.import_wh[0])})", f"1-0:1.8.2({_kwh(s.import_wh[1])})",
        f"1-0:2.8.1({_kwh(s.export_wh[0])})", f"1-0:2.8.2({_kwh(s.export_wh[1])})",
        f"0-0:96.14.0({s.tariff:04d})",
        f"1-0:1.7.0({_kw(s.import_w)})", f"1-0:2.7.0({_kw(s.export_w)})",
        "0-0:96.7.21(00004)", "0-0:96.7.9(00002)",
        "1-0:99.97.0(1)(0-0:96.7.19)(230116093021W)(0000002140*s)",
        "1-0:32.32.0(00002)", "1-0:32.36.0(00000)", "0-0:96.13.0()",
    ]
    if v5:
        lines += [f"1-0:{c}.7.0({v // 10:03d}.{v % 10}*V)"
                  for c, v in zip((32, 52, 72), s.phase_v_dv, strict=True)]
    lines += [f"1-0:{c}.7.0({a:03d}*A)" for c, a in zip((31, 51, 71), s.phase_a, strict=True)]
    share = [s.import_w // 3, s.import_w // 3, s.import_w - 2 * (s.import_w // 3)]
    lines += [f"1-0:{c}.7.0({_kw(w)})" for c, w in zip((21, 41, 61), share, strict=True)]
    lines += [f"1-0:{c}.7.0({_kw(0)})" for c in (22, 42, 62)]
    lines += [
        "0-1:24.1.0(003)", "0-1:96.1.0(4730303332353631323831363736333137)",
        f"0-1:24.2.1({meter_time(s.gas_utc)})({s.gas_dm3 // 1000:05d}.{s.gas_dm3 % 1000:03d}*m3)",
    ]
    return lines


def _lines_be(s: P1State, header: str) -> list[str]:
    lines = [
        header, "", "0-0:96.1.4(50217)", "0-0:96.1.1(3153414733313031303231363035)",
        f"0-0:1.0.0({meter_time(s.utc)})",
        f"1-0:1.8.1({_kwh(s.import_wh[0])})", f"1-0:1.8.2({_kwh(s.import_wh[1])})",
        f"1-0:2.8.1({_kwh(s.export_wh[0])})", f"1-0:2.8.2({_kwh(s.export_wh[1])})",
        f"0-0:96.14.0({s.tariff:04d})", f"1-0:1.4.0({_kw(s.import_w)})",
        f"1-0:1.6.0({meter_time(s.utc.replace(hour=6, minute=15, second=0))})(03.142*kW)",
        "0-0:98.1.0(1)(1-0:1.6.0)(1-0:1.6.0)(240601000000S)(240514183000S)(04.217*kW)",
        f"1-0:1.7.0({_kw(s.import_w)})", f"1-0:2.7.0({_kw(s.export_w)})",
    ]
    lines += [f"1-0:{c}.7.0({v // 10:03d}.{v % 10}*V)"
              for c, v in zip((32, 52, 72), s.phase_v_dv, strict=True)]
    lines += [f"1-0:{c}.7.0({a:03d}.00*A)" for c, a in zip((31, 51, 71), s.phase_a, strict=True)]
    lines += [
        "0-0:96.3.10(1)", "0-0:17.0.0(999.9*kW)", "1-0:31.4.0(999*A)", "0-0:96.13.0()",
        "0-1:24.1.0(003)", "0-1:96.1.1(37464C4F32313233303838303237)", "0-1:24.4.0(1)",
        f"0-1:24.2.3({meter_time(s.gas_utc)})({s.gas_dm3 // 1000:05d}.{s.gas_dm3 % 1000:03d}*m3)",
    ]
    return lines


def _lines_lu(s: P1State, header: str) -> list[str]:
    total_in = sum(s.import_wh)
    total_out = sum(s.export_wh)
    return [
        header, "", "1-3:0.2.8(42)", f"0-0:1.0.0({meter_time(s.utc)})",
        "0-0:42.0.0(53414731303330303137313130303436)",
        f"1-0:1.8.0({_kwh(total_in)})", f"1-0:2.8.0({_kwh(total_out)})",
        "1-0:3.8.0(000226.118*kvarh)", "1-0:4.8.0(000002.165*kvarh)",
        f"1-0:1.7.0({_kw(s.import_w)})", f"1-0:2.7.0({_kw(s.export_w)})",
        "1-0:3.7.0(00.000*kvar)", "1-0:4.7.0(00.105*kvar)",
        "0-0:17.0.0(999.9*kVA)", "0-0:96.3.10(1)", "0-0:96.7.21(00003)", "0-0:96.7.9(00000)",
        "1-0:99.97.0(0)(0-0:96.7.19)", "1-0:32.32.0(00000)", "1-0:32.36.0(00000)",
        "0-0:96.13.0()",
        f"1-0:32.7.0({s.phase_v_dv[0] // 10:03d}.{s.phase_v_dv[0] % 10}*V)",
        f"1-0:31.7.0({s.phase_a[0]:03d}*A)",
    ]


HEADERS = {
    "v2.2": "/ISk5\\2MT382-1000",
    "v3": "/KMP5 KA6U001511209910",
    "v4": "/KFM5KAIFA-METER",
    "v5": "/ISK5\\2M550T-1012",
    "be": "/FLU5\\253769484_A",
    "lu": "/SAG5\\2T210-D LU",
}


def build_telegram(variant: str, state: P1State) -> bytes:
    """One telegram of ``variant`` for ``state``, CRC included where the variant has one.

    Raises:
        KeyError: unknown variant (``auto`` is not a meter).
    """
    header = HEADERS[variant]
    if variant in ("v2.2", "v3"):
        lines = _lines_v22(state, header)
    elif variant in ("v4", "v5"):
        lines = _lines_v4(state, header, "42" if variant == "v4" else "50")
    elif variant == "be":
        lines = _lines_be(state, header)
    else:
        lines = _lines_lu(state, header)
    body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
    return with_crc(body) if VARIANTS[variant].crc else body + b"\r\n"


def corrupt_crc(telegram: bytes) -> bytes:
    """The same telegram with a CRC that no longer matches (one digit changed)."""
    bang = telegram.rindex(b"!")
    sent = int(telegram[bang + 1: bang + 5], 16)
    wrong = sent ^ 0x0001
    return telegram[: bang + 1] + b"%04X\r\n" % wrong


@dataclass
class P1SimConfig:
    """How the simulated meter behaves."""

    variant: str = "v5"
    interval_s: float = 0.1
    """Real seconds between telegrams (a real meter: 1 s for DSMR 5, 10 s before)."""
    faults: frozenset[str] = frozenset()
    fault_every: int = 2
    """Apply the faults to every n-th telegram (1: all of them)."""
    seed: int = 1
    state: P1State = field(default_factory=P1State)
    key: bytes | None = None
    """Variant ``lu`` only: encrypt each telegram as a Smarty frame with this key."""
    system_title: bytes = b"SAGY\x00\x01\x02\x03"


class P1Simulator(PtySimulator):
    """Push telegrams to a pseudo-terminal; use as a context manager.

    ``port`` is the path a driver opens. ``sent`` counts telegrams by kind.
    """

    thread_name = "p1-sim"

    def __init__(self, config: P1SimConfig | None = None) -> None:
        super().__init__()
        self.config = config or P1SimConfig()
        unknown = set(self.config.faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown P1 fault mode(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        if self.config.variant not in HEADERS:
            raise ValueError(f"unknown DSMR variant {self.config.variant!r}")
        self.state = copy.deepcopy(self.config.state)
        self.sent: dict[str, int] = dict.fromkeys(("good", "bad-crc", "garbage", "truncated"), 0)
        self._rng = random.Random(self.config.seed)


    def telegram(self, n: int) -> bytes:
        """The ``n``-th frame to send (fault applied when due); advances the meter."""
        c = self.config
        step = int(VARIANTS[c.variant].interval_s)
        self.state.advance(step)
        data = build_telegram(c.variant, self.state)
        if c.key is not None:
            data = smarty.encrypt(data, c.key, c.system_title, n + 1)
        due = n % c.fault_every == c.fault_every - 1
        if not due:
            self.sent["good"] += 1
            return data
        out = data
        if "bad-crc" in c.faults and c.key is not None:  # a flipped ciphertext byte
            out = out[:40] + bytes((out[40] ^ 0x01,)) + out[41:]
            self.sent["bad-crc"] += 1
        elif "bad-crc" in c.faults and VARIANTS[c.variant].crc:
            out = corrupt_crc(out)
            self.sent["bad-crc"] += 1
        if "truncated" in c.faults:
            out = out[: len(out) // 2]
            self.sent["truncated"] += 1
        if "garbage" in c.faults:
            noise = bytes(self._rng.choice(b"\x00\x7f\xff#$%&ABCxyz0123\r\n") for _ in range(37))
            out = noise + out
            self.sent["garbage"] += 1
            if out.endswith(data):
                self.sent["good"] += 1
        return out

    def _run(self) -> None:
        assert self._pty is not None
        n = 0
        while not self._stop.wait(self.config.interval_s):
            if "silence" in self.config.faults:
                continue
            write_all(self._pty.master, self.telegram(n))
            n += 1

"""The demo's energy community: a simulated day of four households, settled and verified.

``meterchain demo`` ends here, with its replica still running. A whole day cannot be
waited for, so two simulated gateways take one past day's readings in seconds: each
has its own Ed25519 key and ledger (the agent's :class:`BlockStore`), seals a block per
15 minutes of 5-minute register readings stamped over that day, and forwards the
blocks with the agent's :class:`Forwarder` to the demo's replica, which verifies and
indexes them. Then, as an operator and a member would:

1. the community's metering points go into the replica's registry
   (``meterchain replica meter import``), and a token with the members' scope
   (``read:readings``) is made;
2. ``meterchain settle run`` settles the day over HTTP with that token (dynamic pro
   rata, as in Austria) and signs the settlement document;
3. each member's statement is printed, with the hour at noon when the rooftop PV
   makes more than the community uses and, without a battery, the rest goes to the grid;
4. ``meterchain settle verify`` recomputes the settlement from the replica's copy and
   reproduces the signed root.

The households and their readings are in :mod:`meterchain.demo_households`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import os
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyfiles as keys
import ledger
from agent.storage.store import BlockStore
from ledger import block_readings
from ledger.errors import ForwardingError
from meterchain.demo_households import (
    GATEWAYS,
    MEMBERS,
    POINTS,
    TIME_ZONE,
    Gateway,
    day_readings,
    past_day,
)
from settlement.errors import SettlementError

READS_PER_BLOCK = 3
"""A block seals 15 minutes of readings."""

COMMUNITY_HEAD = """# The demo's energy community (docs/settlement.md section 3)
[community]
name = "sonnenhof"
time_zone = "Europe/Vienna"
interval_minutes = 15
currency = "EUR"

[sharing]
mode = "pro_rata"          # the default in Austria, France and Luxembourg

[prices]                   # minor units (cents) per MWh
community = 11000          # 11 ct/kWh for energy shared in the community
grid_supply = 28000        # 28 ct/kWh from the supplier for the rest
feed_in = 7000             # 7 ct/kWh for surplus fed into the grid
grid_fee_kind = "per_mwh"
grid_fee = 1500            # of the community price, 1.5 ct/kWh goes to the grid
"""


@dataclass(frozen=True)
class CommunityResult:
    """What the community part of the demo settled and found."""

    day: str
    directory: Path
    settlement: Path
    root: str
    verified: bool


async def seal_and_forward(gw: Gateway, directory: Path, day: dt.date, replica_url: str
                           ) -> tuple[bytes, int, int]:
    """Seal the gateway's day into its ledger (what is not there yet) and forward every
    block to the replica; return (gateway key, blocks sealed now, head height).

    Raises:
        ForwardingError: the replica did not acknowledge every block.
    """
    from agent.pipeline.forwarder import Forwarder, ForwarderOptions
    from agent.storage.state import StateDB

    keydir = directory / "keys"
    if not (keydir / keys.GATEWAY_KEY).exists():
        keys.generate_gateway_key(keydir)
    seed = keys.load_signing_key(keydir / keys.GATEWAY_KEY)
    public = keys.public_from_seed(seed)
    sealed = 0
    with BlockStore.open(directory / "ledger") as store:
        registers: dict[tuple[str, str], int] = {}
        after = -1
        if store.head is not None:
            head = store.get(store.height)
            after = head.header.time_end_ms
            for r, _salt in block_readings(head):
                registers[(r.meter_id, r.obis)] = r.value
        rounds = day_readings(gw, day, after, registers)
        prev = store.head.header if store.head is not None else None
        for i in range(0, len(rounds), READS_PER_BLOCK):
            readings = [r for rnd in rounds[i:i + READS_PER_BLOCK] for r in rnd]
            salts = [os.urandom(ledger.SALT_SIZE) for _ in readings]
            t0 = readings[0].timestamp_ms if prev is None else max(
                readings[0].timestamp_ms, prev.time_end_ms)
            block = ledger.seal_block(seed, prev, readings, salts, t0, readings[-1].timestamp_ms)
            store.append(block)
            prev = block.header
            sealed += 1
        height = store.height
        state = StateDB(directory / "state.json")
        try:
            fw = Forwarder("demo-replica", replica_url, store, state, gateway_key=public,
                           options=ForwarderOptions(timeout_s=10.0, idle_poll_s=0.05,
                                                    backoff_initial_s=0.1, backoff_max_s=0.5))
            stop = asyncio.Event()
            task = asyncio.create_task(fw.run(stop))
            deadline = time.monotonic() + 30
            while fw.acked_height < height and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await task
        finally:
            state.close()
        if fw.acked_height < height:
            raise ForwardingError(f"{gw.name}: the replica acknowledged only up to height "
                                  f"{fw.acked_height} of {height}: {fw.status['last_error']}",
                                  replica="demo")
    return public, sealed, height


def _registry_toml() -> str:
    parts = ["# The community's metering points (docs/replica-api.md, \"Registry file\")\n"]
    for point, role, member, gw, meter in POINTS:
        parts.append(f'\n[[point]]\nid = "{point}"\nrole = "{role}"\nmember = "{member}"\n'
                     f'  [[point.meter]]\n  gateway = "{gw}"\n  meter = "{meter}"\n')
    return "".join(parts)


def _community_toml() -> str:
    rows = [COMMUNITY_HEAD]
    for member, consumption, generation, about in MEMBERS:
        rows.append(f'\n[[members]]                # {about}\nid = "{member}"\n'
                    f"consumption = {json.dumps(list(consumption))}\n"
                    f"generation = {json.dumps(list(generation))}\n")
    return "".join(rows)


def _kwh(wh: int) -> str:
    return f"{wh // 1000}.{wh % 1000:03d}"


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


class _Shell:
    """Runs ``meterchain`` commands in this process and shows them as typed in ``cwd``."""

    def __init__(self, cwd: Path, out: Callable[[str], None]) -> None:
        self.cwd, self.out = cwd, out

    def show(self, path: Path | str) -> str:
        text = str(path)
        prefix = f"{self.cwd}/"
        return text[len(prefix):] if text.startswith(prefix) else text

    def __call__(self, *argv: str | Path, quiet: bool = False) -> tuple[int, str]:
        from meterchain.cli import main

        words = [str(a) for a in argv]
        self.out(f"  $ meterchain {' '.join(self.show(w) for w in words)}")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(words)
        if not quiet:
            for line in stdout.getvalue().splitlines():
                self.out(f"    {line}")
        if code != 0:
            raise SettlementError(f"`meterchain {' '.join(words[:2])}` exited {code}: "
                                  f"{stdout.getvalue().strip()} {stderr.getvalue().strip()}")
        return code, stdout.getvalue()


def _statements(settled: Path) -> dict[str, dict[str, Any]]:
    return {m: json.loads((settled / "members" / f"{m}.json").read_text())
            for m, *_ in MEMBERS}


def _hour_at_noon(settled: Path, day: dt.date) -> dict[str, int]:
    """The community's channels summed over 12:00-13:00 local time."""
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    noon = int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=tz).timestamp()) * 1000
    sums = {"use": 0, "covered": 0, "generation": 0, "surplus": 0}
    cols = {"use": "G.01_use", "covered": "G.03_covered", "generation": "G.01_generation",
            "surplus": "P.01_surplus"}
    for m, *_ in MEMBERS:
        with open(settled / "members" / f"{m}.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                if noon <= int(row["interval_start_ms"]) < noon + 3_600_000:
                    for k, col in cols.items():
                        sums[k] += int(row[col])
    return sums


def _print_table(out: Callable[[str], None], columns: list[tuple[str, int]],
                 rows: dict[str, list[str]]) -> None:
    """A member column, then ``columns`` (header, width) right-aligned, one row a member."""
    out(f"    {'member':8}" + "".join(f"{h:>{w}}" for h, w in columns))
    for m, values in rows.items():
        out(f"    {m:8}" + "".join(f"{v:>{w}}" for v, (_, w) in zip(values, columns,
                                                                     strict=True)))


def _print_statements(st: dict[str, dict[str, Any]], out: Callable[[str], None]) -> None:
    out("  each member's statement, energy in kWh (EDA channels: used G.01, shared G.03 = "
        "covered by the community, surplus P.01):")
    energy = ("G.01_use", "G.03_covered", "grid_import", "G.01_generation", "P.01_surplus")
    _print_table(out, [("used", 9), ("shared", 9), ("from grid", 11), ("PV made", 9),
                       ("PV surplus", 12)],
                 {m: [_kwh(s["channels_wh"][k]) for k in energy] for m, s in st.items()})
    out("  and money in EUR (shared energy 11 ct/kWh, of which the grid fee 1.5 ct; supplier "
        "28 ct/kWh; feed-in 7 ct/kWh):")
    money = ("paid_to_community", "received_from_community", "grid_import", "feed_in")
    _print_table(out, [("pays community", 16), ("paid by community", 19),
                       ("pays supplier", 15), ("feed-in", 9)],
                 {m: [_money(s["money_minor"][k]) for k in money] for m, s in st.items()})


async def settle_community_day(work: Path, replica_url: str, storage_url: str, *,
                               day: dt.date | None = None, kept: bool = True,
                               out: Callable[[str], None] = print) -> CommunityResult:
    """Seal, forward, register, settle and verify one past day of the demo community.

    ``work`` keeps the community's gateways, keys and settlements (a second run on the
    same directory continues the gateways' chains and settles again into a new
    directory). ``storage_url`` is the running replica's database, where the operator
    enrolls the gateways and makes the members' token. ``kept``: ``work`` outlives the
    demo, so the commands to try next are worth printing.

    Raises:
        ForwardingError: the replica did not take every block.
        SettlementError: ``settle run`` or ``settle verify`` failed.
    """
    from replica.auth import READ_READINGS
    from replica.storage import open_storage
    from replica.tokens import create_token

    day = day or past_day()
    label = day.isoformat()
    work.mkdir(parents=True, exist_ok=True)
    out("")
    where = (f"files in {work}" if kept else
             "files in a temporary directory: `meterchain demo --ledger DIR` keeps them")
    out(f"energy community 'sonnenhof': {len(MEMBERS)} households settled over {label} "
        f"({TIME_ZONE}); {where}")
    for member, _c, _g, about in MEMBERS:
        out(f"  {member:6} {about}")
    storage = open_storage(storage_url)
    try:
        for gw in GATEWAYS:  # the operator enrolls the gateways' keys (replica enroll)
            keydir = work / gw.name / "keys"
            if not (keydir / keys.GATEWAY_KEY).exists():
                keys.generate_gateway_key(keydir)
            key = keys.load_public_key(str(keydir / keys.GATEWAY_PUB))
            if storage.gateway(key) is None:
                storage.enroll(key, gw.name, gw.site, int(time.time() * 1000))
        token, _ = create_token(storage, "sonnenhof members", (READ_READINGS,),
                                int(time.time() * 1000))
    finally:
        storage.close()
    for gw in GATEWAYS:
        key, sealed, height = await seal_and_forward(gw, work / gw.name, day, replica_url)
        meters = ", ".join(m.meter_id for m in gw.meters)
        out(f"  gateway {gw.name} ({meters}): sealed {sealed} block(s) of 5-minute readings "
            f"stamped over {label}, forwarded; replica holds heights 0..{height}")

    shell = _Shell(work, out)
    (work / "registry.toml").write_text(_registry_toml())
    (work / "community.toml").write_text(_community_toml())
    (work / "replica.toml").write_text(f"[storage]\nurl = {json.dumps(storage_url)}\n")
    token_file = work / "member.token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(token + "\n")
    if not (work / "operator" / keys.GATEWAY_KEY).exists():
        keys.generate_gateway_key(work / "operator")
    shell("replica", "meter", "import", work / "registry.toml", "--config",
          work / "replica.toml")
    out("  a token for the members (scope read:readings) is in member.token")
    settled = work / "settled" / label
    n = 1
    while (settled / "settlement.json").exists():
        n += 1
        settled = work / "settled" / f"{label}-{n}"
    source: list[str | Path] = ["--replica", replica_url, "--token-file", token_file]
    shell("settle", "run", "--community", work / "community.toml", "--period", label,
          *source, "--key", work / "operator" / keys.GATEWAY_KEY, "--out", settled)
    noon = _hour_at_noon(settled, day)
    out(f"  at noon (12:00-13:00) clara's roof made {_kwh(noon['generation'])} kWh while the "
        f"households used {_kwh(noon['use'])} kWh: {_kwh(noon['covered'])} kWh shared, "
        f"{_kwh(noon['surplus'])} kWh surplus to the grid (no battery)")
    _print_statements(_statements(settled), out)
    doc = json.loads((settled / "settlement.json").read_text())["document"]
    t = doc["totals"]
    out(f"  totals: {_kwh(t['covered'])} kWh shared of {_kwh(t['generation'])} kWh generated "
        f"and {_kwh(t['use'])} kWh used; surplus {_kwh(t['surplus'])} kWh")
    out("  publishing it to the replica (its web view's Community page shows it):")
    shell("settle", "publish", settled, "--config", work / "replica.toml")
    out("  verifying the signed settlement against the replica's copy (as any member can), "
        "the result recorded in the replica:")
    code, verdict = shell("settle", "verify", settled / "settlement.json", "--community",
                          work / "community.toml", *source, "--record",
                          work / "replica.toml")
    # with --record, the verdict line follows the line saying where it was recorded
    verified = code == 0 and any(line.startswith("OK ") and doc["root"] in line
                                 for line in verdict.splitlines())
    if not kept:
        return CommunityResult(label, work, settled / "settlement.json", doc["root"], verified)
    out(f"  try (in {work}):")
    out(f"    meterchain settle prove {shell.show(settled / 'settlement.json')} --member anna "
        "-o anna.json && meterchain settle verify-proof anna.json")
    out(f"    meterchain settle verify {shell.show(settled / 'settlement.json')} --community "
        "community.toml --intervals "
        f"{shell.show(settled / 'intervals.json')}   # offline, from the saved input")
    return CommunityResult(label, work, settled / "settlement.json", doc["root"], verified)

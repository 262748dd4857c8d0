"""The worked examples of docs/intervals.md, kept as fixtures, against the engine."""

from __future__ import annotations

from datetime import date

import pytest

from replica.meterdata import Origin, aggregate, compute_intervals
from replica.meterdata.calendar import day_range, days, zone
from replica.meterdata.intervals import RULES_VERSION
from tests.meterdata import worked

INTERVAL_FIXTURES = ["boundary", "gap-40min", "gap-5h", "rollover"]


def _origins(os_: list[list[object]]) -> tuple[Origin, ...]:
    return tuple(Origin(str(o[0]), int(str(o[1])), int(str(o[2]))) for o in os_)


@pytest.mark.parametrize("name", INTERVAL_FIXTURES)
def test_engine_gives_the_worked_example(name):
    fx = worked.load(name)
    assert fx["rules_version"] == RULES_VERSION
    r = compute_intervals(worked.columns(fx), with_boundaries=True, **worked.engine_kwargs(fx))
    got = [
        (
            worked.iso(i.start_ms),
            worked.iso(i.end_ms),
            i.wh,
            i.quality.value,
            i.rule,
            i.start_trace,
            i.end_trace,
        )
        for i in r.intervals
    ]
    want = [
        (
            i["start"],
            i["end"],
            i["wh"],
            i["quality"],
            i["rule"],
            _origins(i["start_trace"]),
            _origins(i["end_trace"]),
        )
        for i in fx["intervals"]
    ]
    assert got == want
    assert [(worked.iso(b.at_ms), b.wh, b.how) for b in r.boundaries] == [
        (b["at"], b["wh"], b["how"]) for b in fx["boundaries"]
    ]
    assert [
        (
            f.kind,
            worked.iso(f.ts_ms),
            None if f.since_ms is None else worked.iso(f.since_ms),
            f.effect,
            f.origins,
        )
        for f in r.findings
    ] == [
        (f["kind"], f["ts"], f.get("since"), f["effect"], _origins(f["origins"]))
        for f in fx["findings"]
    ]


def test_dst_days_have_92_and_100_quarter_hours():
    fx = worked.load("dst")
    assert fx["rules_version"] == RULES_VERSION
    tz = zone(fx["params"]["tz"])
    cols = worked.columns(fx)
    kw = worked.engine_kwargs(fx)
    for d in fx["days"]:
        start, end = day_range(date.fromisoformat(d["day"]), tz)
        assert (worked.iso(start), worked.iso(end)) == (d["start"], d["end"])
        assert (end - start) // 3_600_000 == d["hours"]
        r = compute_intervals(cols, start_ms=start, end_ms=end, **kw)
        (total,) = aggregate(r.intervals, days(start, end, tz))
        assert (total.label, total.intervals, total.wh, total.quality.value) == (
            d["day"],
            d["intervals"],
            d["wh"],
            d["quality"],
        )
    start, end = day_range(date(2026, 10, 25), tz)
    r = compute_intervals(cols, start_ms=start, end_ms=end, **kw)
    by_start = {worked.iso(i.start_ms): i for i in r.intervals}
    for e in fx["excerpt"]:
        iv = by_start[e["start"]]
        assert (worked.iso(iv.end_ms), iv.wh, iv.quality.value) == (e["end"], e["wh"], e["quality"])
        for key, at in (("local_start", iv.start_ms), ("local_end", iv.end_ms)):
            local = worked.local(at, tz)
            assert local == e[key]


@pytest.mark.parametrize("name", worked.NAMES)
def test_doc_quotes_the_fixture(name):
    doc = worked.DOC.read_text()
    assert worked.quoted(doc, name) == worked.render(worked.load(name)), (
        f"docs/intervals.md differs from fixtures/{name}.json: "
        "regenerate the block with python -m tests.meterdata.worked"
    )

// Shared helpers of the web view's pages. Every number shown comes from /v1, fetched
// with the session cookie (the server adds the login's token); nothing is computed
// server-side for the page alone.
"use strict";
const MC = (() => {
  const scopes = new Set((document.body.dataset.scopes || "").split(" ").filter(Boolean));

  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail || detail; } catch (_e) { /* not JSON */ }
      throw new Error(`${path}: HTTP ${r.status}: ${detail}`);
    }
    return r.json();
  }

  function status(text, kind) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.className = "status " + (kind || "");
  }

  // Called once everything is drawn; the time since navigation start is kept for
  // bench/ui.py (data-drawn-ms), after a frame so that the browser has painted.
  function ready() {
    status("", "done");
    requestAnimationFrame(() => {
      document.body.dataset.drawnMs = String(Math.round(performance.now()));
      document.body.dataset.ready = "1";
    });
  }

  function failed(err) {
    status(String(err.message || err), "error");
    document.body.dataset.ready = "error";
  }

  function iso(ms) {
    return ms === null || ms === undefined ? "–" : new Date(ms).toISOString().replace(".000Z", "Z");
  }

  function age(ms) {
    if (ms === null || ms === undefined) return "never";
    const s = Math.floor(ms / 1000);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h`;
    return `${Math.floor(s / 86400)} d`;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // A table whose header cells (th[data-key]) sort the rows; render(row) gives a <tr>.
  function sortableTable(table, render) {
    const body = table.tBodies[0];
    let rows = [];
    let filter = () => true;
    let sortKey = null;
    let dir = 1;
    function draw() {
      const shown = rows.filter(filter);
      if (sortKey) {
        const num = table.querySelector(`th[data-key="${sortKey}"]`).dataset.num;
        shown.sort((a, b) => {
          const x = a[sortKey], y = b[sortKey];
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (num ? x - y : String(x).localeCompare(String(y))) * dir;
        });
      }
      const frag = document.createDocumentFragment();
      for (const r of shown) frag.appendChild(render(r));
      body.replaceChildren(frag);
      table.dataset.shown = String(shown.length);
    }
    for (const th of table.querySelectorAll("th[data-key]")) {
      th.tabIndex = 0;
      th.setAttribute("aria-sort", "none");
      const go = () => {
        const k = th.dataset.key;
        dir = sortKey === k ? -dir : 1;
        sortKey = k;
        for (const o of table.querySelectorAll("th[data-key]")) o.setAttribute("aria-sort", "none");
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        draw();
      };
      th.addEventListener("click", go);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    }
    return {
      set(newRows) { rows = newRows; draw(); },
      filter(fn) { filter = fn; draw(); },
    };
  }

  // The calendar date (YYYY-MM-DD) of an instant in an IANA time zone.
  function dayIn(ms, tz) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(ms));
  }

  // YYYY-MM-DD plus n days (calendar arithmetic, no time zone involved).
  function addDays(day, n) {
    const d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  const COLOURS = ["#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#6e7781"];
  const MARK = "#fb8500";

  // A uPlot time-series plot in el: x in ms, lines [{label, values, marked}] where marked
  // is a parallel array of booleans (substituted or estimated: drawn as ringed points).
  // The uPlot instance is kept on el.uplot (its data are what is drawn).
  function plot(el, xMs, lines, tz, unit) {
    if (el.uplot) el.uplot.destroy();
    el.replaceChildren();
    const x = xMs.map((ms) => ms / 1000);
    const data = [x];
    const series = [{}];
    lines.forEach((l, i) => {
      const colour = COLOURS[i % COLOURS.length];
      data.push(l.values);
      series.push({ label: l.label, stroke: colour, width: 1.5, points: { show: false } });
    });
    lines.forEach((l) => {
      if (!l.marked || !l.marked.some(Boolean)) return;
      data.push(l.values.map((v, j) => (l.marked[j] ? v : null)));
      series.push({ label: `${l.label}: substituted/estimated`, stroke: MARK, width: 0,
        paths: () => null, points: { show: true, size: 8, stroke: MARK, width: 2, fill: "#fff" } });
    });
    const opts = {
      width: Math.max(320, el.clientWidth || 800), height: 320, series,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
      axes: [{}, { label: unit, size: 60 }],
      scales: { x: { time: true } },
    };
    el.uplot = new uPlot(opts, data, el);
    return el.uplot;
  }

  // An integer amount in minor units (cents) as major units with two decimals, by
  // integer arithmetic only (no float rounding), e.g. -1234 -> "-12.34 EUR".
  function money(minor, currency) {
    const sign = minor < 0 ? "-" : "";
    const a = Math.abs(minor);
    return `${sign}${Math.floor(a / 100)}.${String(a % 100).padStart(2, "0")} ${currency}`;
  }

  return { scopes, api, status, ready, failed, iso, age, el, sortableTable, dayIn, addDays, plot, money };
})();

// Gateway: chain facts, metering points, a day of 15-minute energy (import, export,
// PV generation) with substituted and estimated intervals marked, and fork evidence.
"use strict";
(() => {
  const key = document.body.dataset.key;
  const tz = document.body.dataset.tz;
  const mayReadReadings = MC.scopes.has("read:readings");

  function fact(dl, label, value, id) {
    dl.appendChild(MC.el("dt", label));
    const dd = MC.el("dd", value);
    dd.id = `fact-${id}`;
    dl.appendChild(dd);
  }

  function lineName(s) {
    if (s.role === "pv" && s.direction === "export") return `${s.label} PV generation`;
    return `${s.label} ${s.direction}`;
  }

  function drawFacts(f) {
    document.getElementById("gw-title").textContent = `Gateway ${f.name}`;
    const dl = document.getElementById("facts");
    fact(dl, "Name", f.name, "name");
    fact(dl, "Site", f.site === null ? "" : f.site, "site");
    fact(dl, "Key", f.key, "key");
    fact(dl, "Height", f.height, "height");
    fact(dl, "Head hash", f.head_hash === null ? "–" : f.head_hash, "head_hash");
    fact(dl, "First reading", MC.iso(f.first_reading_ms), "first_reading");
    fact(dl, "Last reading", MC.iso(f.last_reading_ms), "last_reading");
    fact(dl, "Last block accepted", MC.iso(f.last_seen_ms), "last_seen");
    fact(dl, "Enrolled", MC.iso(f.enrolled_ms), "enrolled");
    fact(dl, "Revoked from", MC.iso(f.revoked_at_ms), "revoked");
  }

  function drawForks(forks) {
    const table = document.getElementById("forks");
    if (forks.forks.length === 0) {
      document.getElementById("forks-none").hidden = false;
      return;
    }
    const frag = document.createDocumentFragment();
    for (const x of forks.forks) {
      const tr = document.createElement("tr");
      tr.appendChild(MC.el("td", x.height, "num"));
      tr.appendChild(MC.el("td", MC.iso(x.seen_ms)));
      tr.appendChild(MC.el("td", x.a.header, "key"));
      tr.appendChild(MC.el("td", x.b.header, "key"));
      frag.appendChild(tr);
    }
    table.tBodies[0].replaceChildren(frag);
    table.hidden = false;
    document.getElementById("forks-download").hidden = false;
  }

  function drawPoints(points) {
    const frag = document.createDocumentFragment();
    for (const p of points.points) {
      for (const m of p.meters.filter((m) => m.gateway === key)) {
        const tr = document.createElement("tr");
        for (const v of [p.point, p.role, p.member || "", m.meter, m.from_ms === 0 ? "always" : MC.iso(m.from_ms), m.to_ms === null ? "" : MC.iso(m.to_ms)]) {
          tr.appendChild(MC.el("td", v));
        }
        frag.appendChild(tr);
      }
    }
    for (const u of points.unassigned.filter((u) => u.gateway === key)) {
      const tr = document.createElement("tr");
      for (const v of ["(unassigned)", "", "", u.meter, "", ""]) tr.appendChild(MC.el("td", v));
      frag.appendChild(tr);
    }
    document.querySelector("#points tbody").replaceChildren(frag);
  }

  function drawDay(doc) {
    const series = doc.series;
    const plotEl = document.getElementById("day-plot");
    document.getElementById("no-intervals").hidden = series.length > 0;
    plotEl.hidden = series.length === 0;
    const thead = document.querySelector("#day-table thead");
    const tbody = document.querySelector("#day-table tbody");
    if (series.length === 0) {
      if (plotEl.uplot) { plotEl.uplot.destroy(); plotEl.uplot = null; }
      thead.replaceChildren();
      tbody.replaceChildren();
      return;
    }
    const x = series[0].intervals.map((iv) => iv.start_ms);
    const lines = series.map((s) => ({
      label: lineName(s),
      values: s.intervals.map((iv) => iv.wh),
      marked: s.intervals.map((iv) => iv.quality === "substituted" || iv.quality === "estimated"),
    }));
    MC.plot(plotEl, x, lines, tz, "Wh");
    const hr = document.createElement("tr");
    hr.appendChild(MC.el("th", `Start (${doc.tz})`));
    for (const l of lines) { hr.appendChild(MC.el("th", `${l.label} (Wh)`)); hr.appendChild(MC.el("th", "quality")); }
    thead.replaceChildren(hr);
    const frag = document.createDocumentFragment();
    x.forEach((_ms, j) => {
      const tr = document.createElement("tr");
      tr.appendChild(MC.el("td", series[0].intervals[j].start));
      let marked = false;
      for (const s of series) {
        const iv = s.intervals[j];
        tr.appendChild(MC.el("td", iv.wh === null ? "" : iv.wh, "num"));
        const q = MC.el("td", iv.quality + (iv.rule ? ` (${iv.rule})` : ""), `quality-${iv.quality}`);
        q.dataset.quality = iv.quality;
        tr.appendChild(q);
        if (iv.quality !== "measured") marked = true;
      }
      if (marked) tr.className = "marked";
      frag.appendChild(tr);
    });
    tbody.replaceChildren(frag);
  }

  // Fetch and draw one day; data-day-ms keeps how long that took (bench/ui.py).
  async function loadDay(day) {
    const t0 = performance.now();
    const q = new URLSearchParams({ gateway: key, from: day, to: day, interval: "15m", tz });
    const doc = await MC.api(`/v1/meterdata/intervals?${q}`);
    drawDay(doc);
    await new Promise((resolve) => requestAnimationFrame(resolve));
    document.body.dataset.dayMs = String(Math.round(performance.now() - t0));
    document.body.dataset.day = day;
  }

  async function main() {
    const pointsReq = mayReadReadings ? MC.api("/v1/meterdata/points") : null;
    const [f, forks] = await Promise.all([
      MC.api(`/v1/gateways/${key}/facts`), MC.api(`/v1/gateways/${key}/forks`)]);
    drawFacts(f);
    drawForks(forks);
    if (!mayReadReadings) {
      document.getElementById("no-readings").hidden = false;
      MC.ready();
      return;
    }
    document.getElementById("with-readings").hidden = false;
    const input = document.getElementById("day");
    input.value = MC.dayIn(f.last_reading_ms === null ? Date.now() : f.last_reading_ms, tz);
    const [points] = await Promise.all([pointsReq, loadDay(input.value)]);
    drawPoints(points);
    const go = (day) => {
      if (!day) return;
      input.value = day;
      MC.status("Loading…");
      loadDay(day).then(() => MC.status("", "done")).catch(MC.failed);
    };
    input.addEventListener("change", () => go(input.value));
    document.getElementById("day-prev").addEventListener("click", () => go(MC.addDays(input.value, -1)));
    document.getElementById("day-next").addEventListener("click", () => go(MC.addDays(input.value, 1)));
    MC.ready();
  }
  main().catch(MC.failed);
})();

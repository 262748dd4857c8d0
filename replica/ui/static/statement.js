// A member's statement, printable: channels, money, counterparties and a plot of the
// member's energy per day, all from the statement as published
// (GET /v1/settlements/{doc}/members/{member}/statement.json) and the signed document.
"use strict";
(() => {
  const doc = document.body.dataset.doc;
  const member = document.body.dataset.member;
  // fields of an interval line I,member,start,quality,provisional,use,allocated,covered,
  // generation,surplus,community_surplus,grid_import,grid_export (docs/settlement.md 6)
  const FIELDS = [["use", 5, "Use"], ["covered", 7, "Covered"], ["generation", 8, "Generation"],
    ["surplus", 9, "Surplus"], ["grid_import", 11, "Grid import"]];
  const CHANNELS = [["G.01_use", "Use (G.01)"], ["G.02_allocated", "Allocated (G.02)"],
    ["G.03_covered", "Covered (G.03)"], ["G.01_generation", "Generation (G.01)"],
    ["P.01_surplus", "Surplus (P.01)"], ["community_surplus", "Community surplus"],
    ["grid_import", "Grid import"], ["grid_export", "Grid export"]];
  const MONEY = [["paid_to_community", "Paid to the community"], ["of_which_grid_fees", "of which grid fees"],
    ["received_from_community", "Received from the community"], ["grid_import", "Grid import (supplier)"],
    ["feed_in", "Feed-in (grid)"], ["feed_in_to_community", "Feed-in sold by the community"]];

  function rows(tbody, pairs, values, fmt) {
    const frag = document.createDocumentFragment();
    for (const [k, label] of pairs) {
      const tr = document.createElement("tr");
      tr.dataset.key = k;
      tr.appendChild(MC.el("th", label));
      const td = MC.el("td", fmt(values[k]), "num");
      td.dataset.value = String(values[k]);
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }

  function perDay(lines, tz) {
    const days = new Map();
    for (const ln of lines) {
      if (!ln.startsWith("I,")) continue;
      const f = ln.split(",");
      const start = Number(f[2]);
      const day = MC.dayIn(start, tz);
      let acc = days.get(day);
      if (!acc) {
        acc = { day, start_ms: start };
        for (const [k] of FIELDS) acc[k] = 0;
        days.set(day, acc);
      }
      for (const [k, i] of FIELDS) acc[k] += Number(f[i]);
    }
    return [...days.values()];
  }

  async function main() {
    document.getElementById("print").addEventListener("click", () => window.print());
    if (!MC.scopes.has("read:readings")) {
      document.getElementById("no-readings").hidden = false;
      MC.ready();
      return;
    }
    const base = `/v1/settlements/${doc}`;
    const [signed, st] = await Promise.all([MC.api(`${base}/document`),
      MC.api(`${base}/members/${encodeURIComponent(member)}/statement.json`)]);
    const body = signed.document;
    const tz = body.community.time_zone;
    document.getElementById("with-readings").hidden = false;
    document.getElementById("s-title").textContent = `Statement of ${member}: ${st.community} ${st.period}`;
    const dl = document.getElementById("s-facts");
    for (const [label, v] of [["Member", st.member], ["Community", st.community],
      ["Period", `${st.period} (${tz})`], ["Currency", st.currency],
      ["Provisional intervals", st.provisional_intervals]]) {
      dl.appendChild(MC.el("dt", label));
      dl.appendChild(MC.el("dd", v));
    }
    document.getElementById("s-doc").textContent = st.document_sha256;
    document.getElementById("s-rev").textContent = st.revision;
    rows(document.querySelector("#channels tbody"), CHANNELS, st.channels_wh, (v) => `${v} Wh`);
    rows(document.querySelector("#money tbody"), MONEY, st.money_minor, (v) => MC.money(v, st.currency));
    const days = perDay(st.lines, tz);
    MC.plot(document.getElementById("s-plot"), days.map((d) => d.start_ms),
      FIELDS.map(([k, , label]) => ({ label, values: days.map((d) => d[k]) })), tz, "Wh");
    const frag = document.createDocumentFragment();
    for (const d of days) {
      const tr = document.createElement("tr");
      tr.appendChild(MC.el("td", d.day));
      for (const [k] of FIELDS) tr.appendChild(MC.el("td", d[k], "num"));
      frag.appendChild(tr);
    }
    document.querySelector("#s-days tbody").replaceChildren(frag);
    const cp = document.createDocumentFragment();
    for (const c of st.counterparties) {
      const tr = document.createElement("tr");
      tr.appendChild(MC.el("td", c.member));
      tr.appendChild(MC.el("td", c.role));
      tr.appendChild(MC.el("td", c.wh, "num"));
      tr.appendChild(MC.el("td", MC.money(c.amount, st.currency), "num"));
      tr.appendChild(MC.el("td", MC.money(c.fee, st.currency), "num"));
      cp.appendChild(tr);
    }
    document.querySelector("#counterparties tbody").replaceChildren(cp);
    MC.ready();
  }
  main().catch(MC.failed);
})();

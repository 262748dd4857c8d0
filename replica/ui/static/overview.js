// Overview: every gateway with its state (rule: replica/ui/states.py), counts per state.
"use strict";
(() => {
  const STATES = ["ok", "behind", "silent", "revoked", "fork"];
  const behindMs = Number(document.body.dataset.behindS) * 1000;
  const silentMs = Number(document.body.dataset.silentS) * 1000;

  function state(g, forkKeys, now) {
    if (g.revoked_at_ms !== null && g.revoked_at_ms <= now) return "revoked";
    if (forkKeys.has(g.key)) return "fork";
    if (g.last_seen_ms === null || now - g.last_seen_ms > silentMs) return "silent";
    if (g.last_reading_ms === null || now - g.last_reading_ms > behindMs) return "behind";
    return "ok";
  }

  // Keys of every gateway with fork evidence: /v1/forks a page at a time.
  async function forkedGateways() {
    const keys = new Set();
    let after = "";
    for (;;) {
      const page = await MC.api(`/v1/forks?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      for (const f of page.forks) keys.add(f.key);
      if (!page.next) return keys;
      after = page.next;
    }
  }

  function render(r) {
    const tr = document.createElement("tr");
    tr.dataset.key = r.key;
    tr.dataset.state = r.state;
    const name = MC.el("td");
    const a = MC.el("a", r.name);
    a.href = `/ui/gateways/${r.key}`;
    name.appendChild(a);
    tr.appendChild(name);
    tr.appendChild(MC.el("td", r.site === null ? "" : r.site));
    tr.appendChild(MC.el("td", r.height, "num"));
    const age = MC.el("td", r.age === null ? "never" : `${MC.age(r.age)} ago`, "num");
    if (r.last_seen_ms !== null) age.title = MC.iso(r.last_seen_ms);
    tr.appendChild(age);
    const rage = MC.el("td", r.reading_age === null ? "none" : `${MC.age(r.reading_age)} ago`, "num");
    if (r.last_reading_ms !== null) rage.title = MC.iso(r.last_reading_ms);
    tr.appendChild(rage);
    tr.appendChild(MC.el("td", r.state, `state state-${r.state}`));
    tr.appendChild(MC.el("td", r.key.slice(0, 16) + "…", "key"));
    return tr;
  }

  async function main() {
    const [gw, forkKeys] = await Promise.all([MC.api("/v1/gateways"), forkedGateways()]);
    const now = Date.now();
    const rows = gw.gateways.map((g) => ({
      ...g, state: state(g, forkKeys, now),
      age: g.last_seen_ms === null ? null : now - g.last_seen_ms,
      reading_age: g.last_reading_ms === null ? null : now - g.last_reading_ms,
    }));
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const r of rows) counts[r.state] += 1;
    const table = MC.sortableTable(document.getElementById("gateways"), render);
    table.set(rows);
    let text = "";
    let only = null;  // a state picked by its count, or null
    const apply = () => table.filter((r) => (only === null || r.state === only) &&
      (!text || [r.name, r.site || "", r.key, r.state].some((v) => v.toLowerCase().includes(text))));
    const ul = document.getElementById("counts");
    for (const s of STATES) {
      const li = MC.el("li", null, `state-${s}`);
      li.dataset.state = s;
      const b = MC.el("button", null, "count-button");
      b.type = "button";
      b.title = `show only ${s} gateways (again: all)`;
      b.setAttribute("aria-pressed", "false");
      b.appendChild(MC.el("span", counts[s], "count"));
      b.appendChild(MC.el("span", ` ${s}`));
      b.addEventListener("click", () => {
        only = only === s ? null : s;
        for (const o of ul.querySelectorAll("button")) o.setAttribute("aria-pressed", "false");
        if (only !== null) b.setAttribute("aria-pressed", "true");
        apply();
      });
      li.appendChild(b);
      ul.appendChild(li);
    }
    document.getElementById("filter").addEventListener("input", (e) => {
      text = e.target.value.trim().toLowerCase();
      apply();
    });
    MC.ready();
  }
  main().catch(MC.failed);
})();

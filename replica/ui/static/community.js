// Community: a published settlement (GET /v1/settlements), whether and against which
// replicas it was verified, the community's energy for the month (per day) or a day
// (per interval), and each member's channels and money with its statements.
"use strict";
(() => {
  const mayReadReadings = MC.scopes.has("read:readings");
  const LINES = [
    ["generation", "Generation"], ["consumption", "Consumption"],
    ["covered", "Shared (covered)"], ["surplus", "Surplus"], ["grid_import", "Grid import"]];
  let current = null;  // the settlement shown (an item of the list)

  async function allSettlements() {
    const out = [];
    let after = "";
    for (;;) {
      const page = await MC.api(`/v1/settlements?limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      out.push(...page.settlements);
      if (!page.next) return out;
      after = page.next;
    }
  }

  function fact(dl, label, value, id) {
    dl.appendChild(MC.el("dt", label));
    const dd = MC.el("dd", value);
    dd.id = `fact-${id}`;
    dl.appendChild(dd);
  }

  function drawFacts(s) {
    document.getElementById("c-title").textContent = `Energy community ${s.community}`;
    const dl = document.getElementById("facts");
    dl.replaceChildren();
    fact(dl, "Community", s.community, "community");
    fact(dl, "Period", `${s.period} (${s.time_zone})`, "period");
    fact(dl, "Revision", s.revision, "revision");
    fact(dl, "Members", s.members, "members");
    fact(dl, "Root", s.root, "root");
    fact(dl, "Document SHA-256", s.document_sha256, "document");
    fact(dl, "Operator key", s.operator_key, "operator");
    fact(dl, "Published", MC.iso(s.published_ms), "published");
    if (mayReadReadings) {
      const dd = MC.el("dd");
      const a = MC.el("a", "settlement document (JSON)");
      a.id = "document-download";
      a.href = `/v1/settlements/${s.document_sha256}/document`;
      a.download = `settlement-${s.community}-${s.period}-r${s.revision}.json`;
      dd.appendChild(a);
      dl.appendChild(MC.el("dt", "Download"));
      dl.appendChild(dd);
    }
    const table = document.getElementById("verifications");
    const ok = s.verifications.filter((v) => v.ok);
    document.getElementById("unverified").hidden = s.verifications.length > 0;
    table.hidden = s.verifications.length === 0;
    table.dataset.verified = ok.length > 0 ? "1" : "0";
    const frag = document.createDocumentFragment();
    for (const v of s.verifications) {
      const tr = document.createElement("tr");
      tr.dataset.against = v.against;
      tr.dataset.ok = v.ok ? "1" : "0";
      tr.appendChild(MC.el("td", v.against, "key"));
      tr.appendChild(MC.el("td", MC.iso(v.verified_ms)));
      tr.appendChild(MC.el("td", v.ok ? "root reproduced" : "FAILED", v.ok ? "state-ok" : "state-silent"));
      tr.appendChild(MC.el("td", v.detail));
      frag.appendChild(tr);
    }
    table.tBodies[0].replaceChildren(frag);
  }

  function dayLabel(ms) {
    return MC.dayIn(ms, current.time_zone);
  }

  function timeLabel(ms) {
    return new Intl.DateTimeFormat("en-GB", { timeZone: current.time_zone, hour: "2-digit", minute: "2-digit" }).format(new Date(ms));
  }

  function drawFlows(doc) {
    const rows = doc.flows;
    const x = rows.map((r) => r.start_ms);
    const lines = LINES.map(([k, label]) => ({ label, values: rows.map((r) => r[k]) }));
    MC.plot(document.getElementById("flow-plot"), x, lines, current.time_zone, "Wh");
    document.getElementById("flow-when").textContent = doc.per === "day" ? `Day (${doc.time_zone})` : `Start (${doc.time_zone})`;
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.start = String(r.start_ms);
      tr.appendChild(MC.el("td", doc.per === "day" ? r.day : `${dayLabel(r.start_ms)} ${timeLabel(r.start_ms)}`));
      for (const [k] of LINES) tr.appendChild(MC.el("td", r[k], "num"));
      frag.appendChild(tr);
    }
    document.querySelector("#flow-table tbody").replaceChildren(frag);
  }

  async function loadFlows() {
    const view = document.querySelector("input[name=view]:checked").value;
    const day = document.getElementById("day");
    for (const id of ["day", "day-prev", "day-next"]) document.getElementById(id).disabled = view !== "day";
    const q = view === "day" ? `?day=${day.value}` : "?per=day";
    const doc = await MC.api(`/v1/settlements/${current.document_sha256}/flows${q}`);
    drawFlows(doc);
    document.body.dataset.view = view;
  }

  function memberRow(m) {
    const c = m.channels_wh;
    const money = m.money_minor;
    return {
      member: m.member, use: c["G.01_use"], covered: c["G.03_covered"],
      generation: c["G.01_generation"], surplus: c["P.01_surplus"], grid_import: c.grid_import,
      paid: money.paid_to_community, received: money.received_from_community,
      provisional: m.provisional_intervals,
    };
  }

  function renderMember(r) {
    const tr = document.createElement("tr");
    tr.dataset.member = r.member;
    tr.appendChild(MC.el("td", r.member));
    for (const k of ["use", "covered", "generation", "surplus", "grid_import"]) tr.appendChild(MC.el("td", r[k], "num"));
    for (const k of ["paid", "received"]) {
      const td = MC.el("td", MC.money(r[k], current.currency), "num");
      td.dataset.minor = String(r[k]);
      tr.appendChild(td);
    }
    tr.appendChild(MC.el("td", r.provisional, "num"));
    const links = MC.el("td", null, "links");
    const base = `/v1/settlements/${current.document_sha256}/members/${encodeURIComponent(r.member)}`;
    for (const [kind, label] of [["json", "JSON"], ["csv", "CSV"]]) {
      const a = MC.el("a", label);
      a.href = `${base}/statement.${kind}`;
      a.download = `statement-${r.member}-${current.period}.${kind}`;
      a.className = `dl-${kind}`;
      links.appendChild(a);
      links.appendChild(document.createTextNode(" "));
    }
    const p = MC.el("a", "printable");
    p.href = `/ui/community/${current.document_sha256}/members/${encodeURIComponent(r.member)}`;
    p.className = "dl-print";
    links.appendChild(p);
    tr.appendChild(links);
    return tr;
  }

  async function loadMembers(table) {
    const rows = [];
    let after = "";
    for (;;) {
      const page = await MC.api(`/v1/settlements/${current.document_sha256}/members?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      for (const m of page.members) rows.push(memberRow(m));
      if (!page.next) break;
      after = page.next;
    }
    table.set(rows);
  }

  async function show(s, table) {
    current = s;
    drawFacts(s);
    if (!mayReadReadings) return;
    const day = document.getElementById("day");
    day.min = dayLabel(s.start_ms);
    day.max = dayLabel(s.end_ms - 1);
    if (!day.value || day.value < day.min || day.value > day.max) day.value = day.min;
    await Promise.all([loadFlows(), loadMembers(table)]);
  }

  async function main() {
    const list = await allSettlements();
    if (list.length === 0) {
      document.getElementById("none").hidden = false;
      MC.ready();
      return;
    }
    document.getElementById("with-settlement").hidden = false;
    // newest period first, then the latest revision
    list.sort((a, b) => (b.period.localeCompare(a.period)) || a.community.localeCompare(b.community) || b.revision - a.revision);
    const select = document.getElementById("settlement");
    for (const s of list) {
      const o = MC.el("option", `${s.community} ${s.period} revision ${s.revision}`);
      o.value = s.document_sha256;
      select.appendChild(o);
    }
    const wanted = new URLSearchParams(location.search).get("doc");
    const first = list.find((s) => s.document_sha256 === wanted) || list[0];
    select.value = first.document_sha256;
    let table = null;
    if (mayReadReadings) {
      document.getElementById("with-readings").hidden = false;
      table = MC.sortableTable(document.getElementById("members"), renderMember);
      let text = "";
      document.getElementById("member-filter").addEventListener("input", (e) => {
        text = e.target.value.trim().toLowerCase();
        table.filter((r) => !text || r.member.toLowerCase().includes(text));
      });
      const reload = () => {
        MC.status("Loading…");
        loadFlows().then(() => MC.status("", "done")).catch(MC.failed);
      };
      for (const r of document.querySelectorAll("input[name=view]")) r.addEventListener("change", reload);
      const day = document.getElementById("day");
      day.addEventListener("change", reload);
      const step = (n) => {
        const d = MC.addDays(day.value, n);
        if (d < day.min || d > day.max) return;
        day.value = d;
        reload();
      };
      document.getElementById("day-prev").addEventListener("click", () => step(-1));
      document.getElementById("day-next").addEventListener("click", () => step(1));
    } else {
      document.getElementById("no-readings").hidden = false;
    }
    select.addEventListener("change", () => {
      const s = list.find((x) => x.document_sha256 === select.value);
      MC.status("Loading…");
      show(s, table).then(() => MC.status("", "done")).catch(MC.failed);
    });
    await show(first, table);
    MC.ready();
  }
  main().catch(MC.failed);
})();

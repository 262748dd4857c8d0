// Audit: this replica's heads against every configured peer's; lag and differences marked.
"use strict";
(() => {
  async function main() {
    const data = await MC.api("/v1/peers/heads");
    const ul = document.getElementById("peers");
    for (const p of data.peers) {
      const li = MC.el("li", p.url + (p.error ? ` — unreachable: ${p.error}` : ""), p.error ? "bad" : "");
      ul.appendChild(li);
    }
    document.getElementById("no-peers").hidden = data.peers.length > 0;
    const head = document.querySelector("#heads thead tr");
    for (const t of ["Gateway", "Key", "Height here", ...data.peers.flatMap((p) => [`${p.url} height`, "lag", "status"])]) {
      head.appendChild(MC.el("th", t));
    }
    const frag = document.createDocumentFragment();
    for (const g of data.gateways) {
      const tr = document.createElement("tr");
      tr.dataset.key = g.key;
      tr.appendChild(MC.el("td", g.name === null ? "(not here)" : g.name));
      tr.appendChild(MC.el("td", g.key.slice(0, 16) + "…", "key"));
      tr.appendChild(MC.el("td", g.height === null ? "–" : g.height, "num"));
      let bad = false;
      for (const c of g.peers) {
        tr.appendChild(MC.el("td", c.height === null ? "–" : c.height, "num"));
        tr.appendChild(MC.el("td", c.lag === null ? "–" : c.lag, "num"));
        const st = MC.el("td", c.status, `audit-${c.status}`);
        st.dataset.status = c.status;
        tr.appendChild(st);
        if (c.status !== "same") bad = true;
      }
      if (bad) tr.className = "discrepancy";
      frag.appendChild(tr);
    }
    document.querySelector("#heads tbody").replaceChildren(frag);
    MC.ready();
  }
  main().catch(MC.failed);
})();

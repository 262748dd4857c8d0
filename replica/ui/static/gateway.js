// Gateway: chain facts and fork evidence of one gateway.
"use strict";
(() => {
  const key = document.body.dataset.key;

  function fact(dl, label, value, id) {
    dl.appendChild(MC.el("dt", label));
    const dd = MC.el("dd", value);
    dd.id = `fact-${id}`;
    dl.appendChild(dd);
  }

  async function main() {
    const [f, forks] = await Promise.all([
      MC.api(`/v1/gateways/${key}/facts`), MC.api(`/v1/gateways/${key}/forks`)]);
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
    const table = document.getElementById("forks");
    if (forks.forks.length === 0) {
      document.getElementById("forks-none").hidden = false;
    } else {
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
    MC.ready();
  }
  main().catch(MC.failed);
})();

// The run page: Server-Sent Events say that something changed, and the
// page fetches its live part again (server-rendered). A lost connection is
// shown loudly; nothing polls in a tight loop.
(() => {
  const body = document.body;
  const run = body.dataset.run;
  if (!run || body.dataset.snapshot) return;
  const qs = body.dataset.qs || "";
  const $ = (id) => document.getElementById(id);
  const token = $("token"), actor = $("actor"), result = $("control-result");
  token.value = sessionStorage.getItem("cutover-token") || "";
  actor.value = localStorage.getItem("cutover-actor") || "";
  token.addEventListener("change", () => sessionStorage.setItem("cutover-token", token.value));
  actor.addEventListener("change", () => localStorage.setItem("cutover-actor", actor.value));

  let lastUpdate = Date.now();
  let timer = null;
  const refresh = () => {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      try {
        const r = await fetch(`/runs/${run}/live${qs}`, { cache: "no-store" });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        $("live").innerHTML = await r.text();
        lastUpdate = Date.now();
        applyFilter();
      } catch (e) {
        setConn(false);
      }
    }, 200);
  };

  const conn = $("conn");
  const setConn = (ok) => {
    conn.textContent = ok ? "live" : "CONNECTION LOST — this page is not updating";
    conn.className = ok ? "conn ok" : "conn lost";
    body.classList.toggle("lost", !ok);
  };
  const sep = qs ? "&" : "?";
  const es = new EventSource(`/api/runs/${run}/stream${qs}${sep}after=${body.dataset.lastEvent || 0}`);
  es.addEventListener("run", refresh);
  es.onopen = () => { setConn(true); refresh(); };
  es.onerror = () => setConn(false);
  // Ages and stale checks change with time alone: a calm refresh.
  setInterval(() => { if (es.readyState === EventSource.OPEN) refresh(); }, 5000);
  setInterval(() => {
    const s = Math.round((Date.now() - lastUpdate) / 1000);
    $("updated").textContent = `updated ${s}s ago (${new Date(lastUpdate).toLocaleTimeString()})`;
  }, 1000);

  const applyFilter = () => {
    const st = $("f-state").value, lb = $("f-label").value;
    let shown = 0;
    document.querySelectorAll("#cells .cell").forEach((c) => {
      const hide = (st && c.dataset.state !== st) || (lb && !(c.dataset.labels || "").split(";").includes(lb));
      c.hidden = !!hide;
      if (!hide) shown++;
    });
    $("f-count").textContent = st || lb ? `${shown} shown` : "";
  };
  $("f-state").addEventListener("change", applyFilter);
  $("f-label").addEventListener("change", applyFilter);

  const post = async (url, payload) => {
    result.className = "";
    result.textContent = "…";
    try {
      const r = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": `Bearer ${token.value}`, "X-Cutover-Actor": actor.value },
        body: JSON.stringify(payload || {}),
      });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) { result.className = "err"; result.textContent = j.error || `HTTP ${r.status}`; }
      else result.textContent = j.message || "done";
    } catch (e) {
      result.className = "err";
      result.textContent = String(e);
    }
    refresh();
  };
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.action) post(`/api/runs/${run}/${b.dataset.action}`);
    else if (b.dataset.targetAction) post(`/api/runs/${run}/targets/${encodeURIComponent(b.dataset.target)}/${b.dataset.targetAction}`);
    else if (b.dataset.approve) post(`/api/runs/${run}/steps/${encodeURIComponent(b.dataset.approve)}/approve`, { target: b.dataset.target });
    else if (b.dataset.tick) post(`/api/runs/${run}/checks/${encodeURIComponent(b.dataset.tick)}/tick`, { ok: b.dataset.ok === "true" });
  });
})();

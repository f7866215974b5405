/* infrakit status page: numbers from /api/groups (the controller's memory), one group's page of
   instances from /api/groups/ID, readiness from /readyz, live events over /events (SSE; every
   event also refreshes the numbers). Plain DOM, textContent only: nothing from the server is
   ever parsed as HTML. */
"use strict";

(function () {
  const EVENTS_SHOWN = 50;
  const PAGE = 50;
  const REFRESH_MS = 2000; // safety net: "converged" also changes with time alone
  const state = { selected: null, offset: 0, filter: "all", total: 0, timer: null, pending: false };

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    return { status: response.status, body };
  }

  function breakerCell(s) {
    const words = { closed: "closed", probing: "probing (one create at a time)", open: "open", "half-open": "half-open (trial)" };
    const cls = s.breaker === "closed" ? "ok" : (s.breaker === "probing" ? "warn" : "bad");
    return el("span", words[s.breaker] || s.breaker, "badge " + cls);
  }

  function updateCell(s) {
    if (s.update_total === null || s.update_total === undefined) return el("span", "none", "muted");
    const wrap = el("span");
    const bar = el("progress");
    bar.max = Math.max(1, s.update_total);
    bar.value = s.update_replaced;
    bar.setAttribute("aria-label", "rolling update of " + s.id);
    wrap.append(bar, " " + s.update_replaced + "/" + s.update_total + (s.update_paused ? " paused" : ""));
    return wrap;
  }

  function renderGroups(doc) {
    $("plugin").textContent = doc.Plugin ? "— " + doc.Plugin : "";
    const body = $("groups").tBodies[0];
    const rows = [];
    for (const s of doc.Groups || []) {
      const tr = el("tr");
      tr.dataset.group = s.id;
      const name = el("th");
      name.scope = "row";
      const pick = el("button", s.id, "link");
      pick.type = "button";
      pick.setAttribute("aria-label", "Show group " + s.id);
      pick.addEventListener("click", () => select(s.id));
      name.append(pick);
      const actual = s.actual === null ? el("span", "unknown", "badge warn") : el("span", s.actual);
      if (s.actual === null && s.actual_unknown) actual.title = s.actual_unknown;
      const conv = el("span", s.converged ? "yes" : "no", "badge " + (s.converged ? "ok" : "warn"));
      const checked = s.healthy + s.unhealthy > 0;
      const health = el("span", checked
        ? s.healthy + " healthy, " + s.unhealthy + " unhealthy, " + s.unknown + " unknown"
        : "not checked (" + s.unknown + ")");
      const cells = [name, el("td", s.desired, "num"), wrapTd(actual, "num actual"), wrapTd(conv, "converged"),
        wrapTd(health), wrapTd(breakerCell(s)), wrapTd(updateCell(s))];
      tr.append(...cells);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    $("groups-empty").hidden = rows.length > 0;
    if (!state.selected && doc.Groups && doc.Groups.length) select(doc.Groups[0].id);
  }

  function wrapTd(child, cls) {
    const td = el("td", null, cls);
    td.append(child);
    return td;
  }

  function fact(dl, term, value) {
    dl.append(el("dt", term), el("dd", value));
  }

  function renderDetail(d) {
    $("detail").hidden = false;
    $("detail-id").textContent = d.ID;
    const dl = $("facts");
    dl.replaceChildren();
    fact(dl, "Desired", d.Desired);
    fact(dl, "Actual", d.Actual === null ? "unknown: " + (d.ActualUnknown || "not observed") : d.Actual);
    fact(dl, "Converged", d.Converged ? "yes" : "no");
    fact(dl, "Healthy", d.HealthChecked ? d.Healthy + " (unhealthy " + d.Unhealthy + ")" : "not checked");
    fact(dl, "Pending / destroying", d.Pending + " / " + d.Destroying);
    fact(dl, "At an old config", d.OldConfig);
    fact(dl, "Instance events", d.Events);
    if (d.Backoff) fact(dl, "Next create in", d.Backoff.toFixed(1) + " s");
    if (d.LastError) fact(dl, "Last error", d.LastError);

    const breaker = $("breaker");
    if (d.Degraded) {
      breaker.hidden = false;
      breaker.textContent = "Circuit breaker " + (d.Degraded.HalfOpen ? "half-open" : "open") + ": " +
        d.Degraded.Reason + " (failures " + d.Degraded.Failures + ", next trial in " +
        Number(d.Degraded.NextTrialIn).toFixed(1) + " s; `infrakit group reset " + d.ID + "` closes it)";
    } else {
      breaker.hidden = true;
      breaker.textContent = "";
    }

    const upd = d.Updating;
    $("update").hidden = !upd;
    if (upd) {
      const bar = $("update-bar");
      bar.max = Math.max(1, upd.Total);
      bar.value = upd.Replaced;
      $("update-text").textContent = upd.Replaced + " of " + upd.Total + " replaced";
      const gates = [];
      gates.push(el("li", upd.Paused ? "Paused" + (upd.Reason ? ": " + upd.Reason : "") : (upd.Failed ? "Failed: " + upd.Reason : "Rolling")));
      if (upd.Canary) gates.push(el("li", "Canary of " + upd.Canary + ": " + (upd.Promoted ? "promoted" : "waiting for `infrakit group promote " + d.ID + "`")));
      $("gates").replaceChildren(...gates);
    }

    state.total = d.InstancesTotal || 0;
    const rows = (d.Instances || []).map((r) => {
      const tr = el("tr");
      tr.dataset.instance = r.ID;
      const hcls = r.Health === "healthy" ? "ok" : (r.Health === "unhealthy" ? "bad" : "");
      tr.append(el("td", r.ID), el("td", r.LogicalID || "-"), el("td", r.Config),
        wrapTd(el("span", r.Health, hcls ? "badge " + hcls : "")), el("td", r.Destroying ? "destroying" : (r.Note || "")));
      return tr;
    });
    $("instances").tBodies[0].replaceChildren(...rows);
    const first = state.total ? state.offset + 1 : 0;
    const last = Math.min(state.offset + PAGE, state.total);
    $("page-text").textContent = first + "–" + last + " of " + state.total;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + PAGE >= state.total;
    $("decisions").replaceChildren(...(d.Decisions || []).map((x) => el("li", x)));
  }

  async function refresh() {
    state.pending = false;
    try {
      const groups = await getJSON("/api/groups");
      if (groups.status === 200) renderGroups(groups.body);
      if (state.selected) {
        const q = "?offset=" + state.offset + "&limit=" + PAGE + "&filter=" + state.filter;
        const detail = await getJSON("/api/groups/" + encodeURIComponent(state.selected) + q);
        if (detail.status === 200) renderDetail(detail.body);
        else if (detail.status === 404) { state.selected = null; $("detail").hidden = true; }
      }
      const ready = await getJSON("/readyz");
      const badge = $("ready");
      const failing = Object.entries(ready.body.not_ready || {});
      badge.textContent = ready.status === 200 ? "ready" : "not ready: " + failing.map(([k, v]) => k + " — " + v).join("; ");
      badge.className = "badge " + (ready.status === 200 ? "ok" : "bad");
    } catch (err) {
      setLive(false, "cannot reach infrakit (" + err + ")");
    }
  }

  function soon() {
    if (state.pending) return;
    state.pending = true;
    setTimeout(refresh, 30);
  }

  function select(gid) {
    if (state.selected !== gid) state.offset = 0;
    state.selected = gid;
    soon();
  }

  function setLive(ok, text) {
    const live = $("live");
    live.textContent = text;
    live.className = "badge " + (ok ? "ok" : "warn");
  }

  function addEvent(ev) {
    const list = $("events");
    const li = el("li");
    li.dataset.type = ev.Type;
    li.dataset.id = ev.ID;
    const when = el("time", (ev.Timestamp || "").replace(/^.*T/, "").replace(/\..*$/, ""));
    when.dateTime = ev.Timestamp || "";
    li.append(when, el("span", ev.Type, "type"), el("span", ev.Message || ev.ID));
    list.prepend(li);
    while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
  }

  function follow() {
    const source = new EventSource("/events?topic=&since=10m");
    // Every (re)connection replays the recent events first: start the list afresh.
    source.onopen = () => { $("events").replaceChildren(); setLive(true, "live"); };
    source.onerror = () => setLive(false, "reconnecting…");
    source.onmessage = (msg) => {
      try { addEvent(JSON.parse(msg.data)); } catch (e) { return; }
      soon();
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); soon(); });
    $("next").addEventListener("click", () => { state.offset += PAGE; soon(); });
    $("filter").addEventListener("change", (e) => { state.filter = e.target.value; state.offset = 0; soon(); });
    follow();
    refresh();
    state.timer = setInterval(refresh, REFRESH_MS);
  });
})();

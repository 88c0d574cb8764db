// The rafter dashboard: one page, live from GET /v1/events.
import { h, fill, badge, ago, clock, pct } from "./dom.js";
import { follow } from "./stream.js";

const TOKEN_KEY = "rafter.token";
const $ = (sel) => document.querySelector(sel);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  write: false,
  config: null,
  members: null,
  health: null,
  stats: null,
  stop: null,
  memberIds: "",
};

// ---- API ----

// api sends one request. A 503 with Retry-After (no leader during an
// election) is tried again, a few times, before it counts as a failure.
async function api(method, path, body, tries = 8) {
  for (let i = 1; ; i++) {
    try {
      return await apiOnce(method, path, body);
    } catch (e) {
      if (e.status !== 503 || !e.retryAfter || i >= tries) throw e;
      const out = $("#action-result");
      out.hidden = false;
      out.className = "notice";
      out.textContent = "No leader right now (" + e.message + "); trying again…";
      await new Promise((r) => setTimeout(r, 1000 * Math.min(e.retryAfter, 5)));
    }
  }
}

async function apiOnce(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { message: text } }; }
  if (!resp.ok) {
    const msg = data && data.error ? data.error.message : "HTTP " + resp.status;
    throw Object.assign(new Error(msg), { status: resp.status, retryAfter: Number(resp.headers.get("Retry-After")) || 0 });
  }
  return data;
}

// ---- login ----

function showLogin(message) {
  if (state.stop) { state.stop(); state.stop = null; }
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#token").focus();
}

async function signIn(token) {
  state.token = token;
  let info;
  try {
    info = await api("GET", "/v1/auth", undefined, 1);
  } catch (e) {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e.status === 401 ? "This token is not accepted by the cluster." : "Cannot reach the admin API: " + e.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.write = info.write;
  document.body.classList.toggle("read-only", !info.write);
  $("#access").textContent = (info.auth ? (info.write ? "read-write token" : "read-only token") : "no authentication") + " · node " + info.node;
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  state.stop = follow("/v1/events", state.token, {
    onEvent,
    onState: (s) => {
      const el = $("#conn");
      el.textContent = s === "open" ? "live" : s === "closed" ? "reconnecting" : "reconnecting: " + s;
      el.className = "badge " + (s === "open" ? "ok" : "warn");
    },
    onAuth: () => showLogin("The token was refused; sign in again."),
  });
  route();
}

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("#token").value.trim());
});
$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  showLogin("");
});

// ---- views ----

function route() {
  const view = (location.hash || "#members").slice(1);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
}
window.addEventListener("hashchange", route);

function onEvent(name, data) {
  state[name] = data;
  if (name === "config") { renderSummary(); renderVIPs(); renderPools(); renderRoutes(); renderHistory(); }
  if (name === "members") {
    renderMembers();
    // The VIP move targets are the members: redraw the VIPs when they
    // change, not every second (that would reset an open choice).
    const ids = data.members.map((m) => m.id).join(",");
    if (ids !== state.memberIds) { state.memberIds = ids; renderVIPs(); }
  }
  if (name === "health") renderPools();
  if (name === "stats") renderRoutes();
}

function renderMembers() {
  const st = state.members;
  if (!st) return;
  const leader = st.members.find((m) => m.leader);
  $("#leader").textContent = leader ? "leader " + leader.id + ", term " + st.term : "no leader";
  renderSummary();
  fill($("#members tbody"), st.members.map((m) => {
    const health = m.health || (m.healthy ? "healthy" : "unknown");
    return h("tr", { "data-member": m.id, "data-health": health, "data-leader": m.leader ? "true" : "false" },
      h("td", { class: m.leader ? "leader" : "" }, m.id, m.leader ? " ★" : ""),
      h("td", {}, (m.state || "—") + (m.suffrage && m.suffrage !== "Voter" ? " (" + m.suffrage.toLowerCase() + ")" : "")),
      h("td", {}, m.zone || "—"),
      h("td", { title: m.health_from ? "as " + m.health_from + " sees it" : "" }, badge(health)),
      h("td", {}, ago(m.last_contact)),
      h("td", { class: "num" }, m.error ? "—" : m.applied_index),
      h("td", { class: "num" }, m.error ? "—" : m.lag),
      h("td", { class: m.error ? "error" : "muted" }, m.error ? m.error : m.latency_ms.toFixed(1) + " ms"));
  }));
}

function renderSummary() {
  const st = state.members;
  if (!st) return;
  const leader = st.members.find((m) => m.leader);
  const index = Math.max(st.commit_index, state.config ? state.config.index : 0);
  $("#summary").textContent = st.members.length + " members · leader " + (leader ? leader.id : "none") + " · index " + index;
}

function vipAction(v) {
  if (!state.write) return null;
  const nodes = (state.members ? state.members.members : []).map((m) => m.id);
  const holder = v.assignment ? v.assignment.holder : "";
  const sel = h("select", { "data-action": "vip-target", "aria-label": "move " + v.name + " to" },
    nodes.filter((n) => n !== holder).map((n) => h("option", { value: n }, n)));
  const btn = h("button", {
    "data-action": "move-vip", "data-vip": v.name,
    onclick: () => confirmThen(`Move VIP ${v.name} from ${holder || "nowhere"} to ${sel.value}? No failback undoes an operator move.`,
      () => api("POST", "/v1/vips/" + encodeURIComponent(v.name) + "/move", { to: sel.value }),
      (r) => `VIP ${v.name} assigned to ${r.assignment.holder} at index ${r.index}`),
  }, "Move");
  return [sel, " ", btn];
}

function renderVIPs() {
  const c = state.config;
  if (!c) return;
  fill($("#vips tbody"), c.vips.length ? c.vips.map((v) => {
    const a = v.assignment || {};
    return h("tr", { "data-vip": v.name },
      h("td", {}, v.name), h("td", {}, v.spec.provider),
      h("td", {}, a.holder || "—"), h("td", { class: "num" }, a.token || "—"),
      h("td", {}, a.reason || "—"), h("td", {}, a.holder ? badge(a.settled ? "settled" : "moving", a.settled ? "ok" : "warn") : "—"),
      h("td", {}, a.since ? clock(a.since) : "—"),
      h("td", { class: "act" }, vipAction(v)));
  }) : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no VIPs"))]);
  const moves = c.history.vip_moves || [];
  fill($("#vip-moves"), moves.length ? moves.map((m) =>
    h("li", {}, h("strong", {}, m.name), " ", m.detail, h("span", { class: "muted" }, " · index " + m.index + " · " + clock(m.at))))
    : [h("li", { class: "muted" }, "no moves since this node started")]);
}

function zoneAction(z) {
  if (!state.write) return null;
  const evac = !z.evacuated;
  return h("button", {
    "data-action": evac ? "evacuate" : "restore", "data-zone": z.zone, class: evac ? "danger" : "",
    onclick: () => confirmThen(evac
      ? `Evacuate zone ${z.zone}? No node sends traffic to its backends and its VIPs move away.`
      : `Restore zone ${z.zone}? Its backends get traffic again.`,
      () => api(evac ? "POST" : "DELETE", "/v1/zones/" + encodeURIComponent(z.zone) + "/evacuate"),
      (r) => `Zone ${r.zone} ${r.evacuated ? "evacuated" : "restored"} at index ${r.index}` + (r.warning ? ": " + r.warning : "")),
  }, evac ? "Evacuate" : "Restore");
}

function drainAction(pool, b) {
  if (!state.write || b.lease) return null;
  const drain = !b.drain;
  return h("button", {
    "data-action": drain ? "drain" : "undrain", "data-backend": b.addr,
    onclick: () => confirmThen(`${drain ? "Drain" : "Undrain"} backend ${b.addr} of pool ${pool.name}?`,
      () => {
        const spec = structuredClone(pool.spec);
        for (const x of spec.backends) if (x.addr === b.addr) x.drain = drain;
        return api("PUT", "/v1/pools/" + encodeURIComponent(pool.name) + "?cas=" + pool.modify_index, spec);
      },
      (r) => `${b.addr} ${drain ? "draining" : "back in rotation"} at index ${r.index}`),
  }, drain ? "Drain" : "Undrain");
}

// poolsKey is what the pools view shows: it is redrawn only when that
// changes, so that its buttons stay put under the pointer.
function poolsKey(c, nodes) {
  return JSON.stringify([c.index, state.write, nodes.map((n) => [n.node, n.error ? "error" : "", n.index,
    n.targets.map((t) => [t.pool, t.addr, t.healthy, t.reason, t.ejected_until && Date.parse(t.ejected_until) > Date.now()])])]);
}
let shownPools = "";

function renderPools() {
  const c = state.config;
  if (!c) return;
  const key = poolsKey(c, state.health ? state.health.nodes : []);
  if (key === shownPools) return;
  shownPools = key;
  fill($("#zones tbody"), c.zones.map((z) => h("tr", { "data-zone": z.zone, "data-evacuated": z.evacuated ? "true" : "false" },
    h("td", {}, z.zone), h("td", {}, badge(z.evacuated ? "evacuated" : "in service", z.evacuated ? "bad" : "ok")),
    h("td", {}, z.nodes.join(", ") || "—"), h("td", { class: "num" }, z.backends),
    h("td", { class: "act" }, zoneAction(z)))));
  const nodes = state.health ? state.health.nodes : [];
  const verdict = {};
  for (const n of nodes) for (const t of n.targets) verdict[n.node + "|" + t.pool + "|" + t.addr] = t;
  fill($("#pools"), c.pools.map((p) => {
    const head = h("tr", {}, h("th", {}, "Backend"), h("th", {}, "Zone"), h("th", {}, "Weight"), h("th", {}, "Drain"), h("th", {}, "Lease"),
      nodes.map((n) => h("th", { class: "cell", title: n.error ? n.error : "configuration index " + n.index }, n.node, n.error ? " ⚠" : "")),
      h("th", { class: "act" }, "Action"));
    const rows = (p.spec.backends || []).map((b) => h("tr", { "data-backend": b.addr },
      h("td", {}, b.addr), h("td", {}, b.zone || "—"), h("td", { class: "num" }, b.weight || 1),
      h("td", {}, b.drain ? badge("draining", "warn") : "—"), h("td", {}, b.lease ? String(b.lease) : "—"),
      nodes.map((n) => {
        if (n.error) return h("td", { class: "cell", "data-node": n.node, title: n.error }, badge("no answer", "unknown"));
        const t = verdict[n.node + "|" + p.name + "|" + b.addr];
        if (!t) return h("td", { class: "cell", "data-node": n.node }, badge("unknown"));
        const ejected = t.ejected_until && Date.parse(t.ejected_until) > Date.now();
        return h("td", { class: "cell", "data-node": n.node, title: t.reason || "" },
          badge(t.healthy ? "healthy" : ejected ? "ejected" : "unhealthy", t.healthy ? "healthy" : "unhealthy"));
      }),
      h("td", { class: "act" }, drainAction(p, b))));
    const spec = p.spec;
    return h("div", { class: "pool", "data-pool": p.name },
      h("h3", {}, p.name, h("span", { class: "muted" }, (spec.balancer || "round_robin") + (spec.zone_aware ? ", zone aware" : "") + (spec.health_check ? ", checks " + spec.health_check.path : ""))),
      h("table", {}, h("thead", {}, head), h("tbody", {}, rows)));
  }));
  if (!c.pools.length) fill($("#pools"), [h("p", { class: "muted" }, "no pools")]);
}

function routeMatch(spec) {
  const m = spec.match || {};
  const parts = [];
  if (m.hosts && m.hosts.length) parts.push(m.hosts.join(" "));
  const p = m.path || {};
  if (p.prefix !== undefined) parts.push(p.prefix + "*");
  if (p.exact !== undefined) parts.push(p.exact);
  if (p.regex !== undefined) parts.push("~" + p.regex);
  if (m.methods && m.methods.length) parts.push(m.methods.join(","));
  return parts.join(" ") || "*";
}

function routeAction(spec) {
  const a = spec.action || {};
  if (a.split) return a.split.map((s) => s.pool + (a.split.length > 1 ? " " + s.weight : "")).join(", ");
  if (a.redirect) return "redirect";
  if (a.respond) return "respond " + (a.respond.status || 200);
  return "—";
}

function rateCells(r) {
  if (!r) return [h("td", { class: "num muted" }, "—"), h("td", { class: "num muted" }, "—")];
  return [h("td", { class: "num" }, r.rps.toFixed(r.rps < 10 ? 2 : 0)),
    h("td", { class: "num" + (r.error_rate > 0.01 ? " error" : "") }, pct(r.error_rate))];
}

function renderRoutes() {
  const c = state.config;
  if (!c) return;
  const rates = state.stats || { routes: [], pools: [], backends: [], window_seconds: 0 };
  $("#window").textContent = rates.window_seconds ? "over the cluster, last " + Math.round(rates.window_seconds) + " s" : "collecting…";
  const byRoute = Object.fromEntries(rates.routes.map((r) => [r.name, r]));
  fill($("#routes tbody"), c.routes.length ? c.routes.map((rt) => {
    const r = byRoute[rt.name];
    return h("tr", { "data-route": rt.name, "data-rps": r ? r.rps : 0 },
      h("td", {}, rt.name), h("td", {}, rt.spec.listener), h("td", {}, routeMatch(rt.spec)), h("td", {}, routeAction(rt.spec)),
      rateCells(r), h("td", { class: "num" }, r && r.p99_ms >= 0 ? r.p99_ms.toFixed(1) + " ms" : "—"));
  }) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no routes"))]);
  fill($("#pool-rates tbody"), c.pools.map((p) => {
    const r = rates.pools.find((x) => x.name === p.name);
    return h("tr", { "data-pool": p.name }, h("td", {}, p.name), rateCells(r));
  }));
  const byBackend = Object.fromEntries((rates.backends || []).map((r) => [r.name, r]));
  const rows = c.pools.flatMap((p) => (p.spec.backends || []).map((b) => {
    const r = byBackend[p.name + "/" + b.addr];
    return h("tr", { "data-backend": p.name + "/" + b.addr, "data-rps": r ? r.rps : 0 },
      h("td", {}, p.name), h("td", {}, b.addr), rateCells(r),
      h("td", { class: "num" }, r && r.p99_ms >= 0 ? r.p99_ms.toFixed(1) + " ms" : "—"));
  }));
  fill($("#backend-rates tbody"), rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "no backends"))]);
}

function renderHistory() {
  const c = state.config;
  if (!c) return;
  fill($("#history tbody"), c.history.entries.map((e) => h("tr", {},
    h("td", { class: "num" }, e.index), h("td", {}, clock(e.at)), h("td", {}, e.op),
    h("td", {}, e.kind + " " + e.name), h("td", { class: "muted" }, e.detail || ""))));
}

// ---- actions ----

function confirmThen(question, act, describe) {
  const dlg = $("#confirm");
  $("#confirm-text").textContent = question;
  dlg.returnValue = "";
  dlg.addEventListener("close", async () => {
    if (dlg.returnValue !== "ok") return;
    const out = $("#action-result");
    out.hidden = false;
    try {
      out.textContent = describe(await act());
      out.className = "notice";
    } catch (e) {
      out.textContent = "Failed: " + e.message;
      out.className = "notice error";
    }
  }, { once: true });
  dlg.showModal();
}

// ---- start ----

route();
if (state.token) signIn(state.token);
else showLogin("");

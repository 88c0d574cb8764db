// Small DOM helpers: every text goes in as text, never as HTML.

// h builds an element: h("td", {class: "num"}, "12", child, ...).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// fill replaces the rows of a table body (or the children of any element).
export function fill(el, rows) {
  el.replaceChildren(...rows);
}

export function badge(text, cls) {
  return h("span", { class: "badge " + (cls || text) }, text);
}

// ago says how long before now an RFC 3339 time was; "—" for none.
export function ago(ts, now = Date.now()) {
  if (!ts) return "—";
  const t = Date.parse(ts);
  if (!Number.isFinite(t) || t < Date.UTC(2000, 0, 1)) return "—";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 10) return s.toFixed(1) + " s ago";
  if (s < 120) return Math.round(s) + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return new Date(t).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function clock(ts) {
  if (!ts) return "before this node started";
  const t = Date.parse(ts);
  if (!Number.isFinite(t) || t < Date.UTC(2000, 0, 1)) return "before this node started";
  return new Date(t).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function pct(v) {
  return (v * 100).toFixed(v > 0 && v < 0.001 ? 3 : 1) + "%";
}

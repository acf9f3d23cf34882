// Small DOM helpers and the health vocabulary shared by the pages.
//
// Everything that came from the server is put in the page as text nodes:
// `h()` has no way to set innerHTML, so a service called
// `<img src=x onerror=alert(1)>` shows exactly that.

/**
 * Creates an element. `props`: `class`, `text`, `data` (dataset entries),
 * `on` (event listeners), `for`, and any other attribute by name
 * (`true` sets an empty attribute, `false`/null/undefined skips it).
 * Children are nodes, strings (as text), arrays of those, or null.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === "for") el.htmlFor = v;
      else if (k === "value") el.value = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

export const STATUSES = ["passing", "warning", "critical"];

/** Counts checks by status; statuses other than the three are ignored,
 *  as Consul's UI summary does. */
export function countChecks(checks) {
  const c = { passing: 0, warning: 0, critical: 0 };
  for (const ch of checks || []) if (ch.Status in c) c[ch.Status] += 1;
  return c;
}

/** The worst status among checks ("passing" when there are none). */
export function worstStatus(checks) {
  const c = countChecks(checks);
  if (c.critical) return "critical";
  if (c.warning) return "warning";
  return "passing";
}

/** A status badge: colour, an icon (from CSS) and the word itself, so the
 *  state never depends on colour alone. */
export function statusBadge(status, field = "status") {
  const known = STATUSES.includes(status) ? status : "unknown";
  return h("span", { class: `status status-${known}`, data: { field } }, status || "unknown");
}

/** Three count cells' worth of spans: "3 passing 0 warning 1 critical". */
export function healthSummary(counts) {
  return h(
    "span",
    { class: "health-summary" },
    STATUSES.map((s) =>
      h("span", { class: `count count-${s}${counts[s] ? "" : " zero"}` }, h("span", { class: "num" }, String(counts[s])), ` ${s}`),
    ),
  );
}

/** Tags as separate chips; their text reads "a b c". */
export function tagList(tags, field = "tags") {
  const el = h("span", { class: "tags", data: { field } });
  (tags || []).forEach((t, i) => {
    if (i) el.appendChild(document.createTextNode(" "));
    el.appendChild(h("span", { class: "tag" }, t));
  });
  return el;
}

/** Key/value metadata as a description list. */
export function metaList(meta, field = "meta") {
  const entries = Object.entries(meta || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return h("span", { class: "muted", data: { field } }, "none");
  return h(
    "dl",
    { class: "meta", data: { field } },
    entries.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, String(v)))),
  );
}

/** A table with a caption and `<th scope="col">` headers. */
export function table(caption, headers, rows, cls = "grid") {
  return h(
    "table",
    { class: cls },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", null, h("tr", null, headers.map((t) => (t instanceof Node ? t : h("th", { scope: "col" }, t))))),
    h("tbody", null, rows),
  );
}

// One service: each instance with its node, address:port, tags, meta and
// every check (node checks included) with status and output, from
// `/v1/health/service/<name>`. Health is computed per instance here; the
// summary de-duplicates node checks by (node, CheckID) as Consul's
// services list does.

import { h, fill, plural, countChecks, worstStatus, statusBadge, healthSummary, tagList, metaList, table } from "../dom.js";
import { href } from "../router.js";
import { encodeSegment } from "../api.js";

export function render(ctx) {
  const name = ctx.params.name;
  ctx.title(`${name} - Services`);
  const summary = h("p", { class: "summary", role: "status" }, "Loading…");
  const body = h("div", { class: "instances" });
  ctx.main.append(
    h(
      "div",
      { class: "page-head" },
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: href.services(ctx.dc) }, "Services"), " / "),
      h("h1", { tabindex: "-1" }, name),
      summary,
    ),
    body,
  );

  ctx.watch(`/v1/health/service/${encodeSegment(name)}`, {}, `read service "${name}"`, (data) => {
    const entries = Array.isArray(data) ? data : [];
    entries.sort((a, b) => cmp(a.Node?.Node, b.Node?.Node) || cmp(a.Service?.ID, b.Service?.ID));
    if (entries.length === 0) {
      fill(summary, "No instances are registered for this service.");
      fill(body);
    } else {
      fill(summary, plural(entries.length, "instance"), " · checks: ", healthSummary(serviceCounts(entries)));
      fill(body, entries.map((e) => instance(ctx, e)));
    }
    ctx.loaded();
  });
}

function cmp(a = "", b = "") {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Counts as Consul's services list does: a node check shared by two
 *  instances on one node is counted once. */
function serviceCounts(entries) {
  const seen = new Set();
  const unique = [];
  for (const e of entries) {
    for (const c of e.Checks || []) {
      const k = `${c.Node}\u0000${c.CheckID}`;
      if (seen.has(k)) continue;
      seen.add(k);
      unique.push(c);
    }
  }
  return countChecks(unique);
}

/** An instance's address: the service's own, else its node's (Consul's
 *  rule for DNS and the catalog's ServiceAddress). */
export function instanceAddress(svc, node) {
  const addr = svc.Address || node.Address || "";
  const host = addr.includes(":") && !addr.startsWith("[") ? `[${addr}]` : addr;
  return svc.Port ? `${host}:${svc.Port}` : host;
}

function instance(ctx, e) {
  const node = e.Node || {};
  const svc = e.Service || {};
  const checks = (e.Checks || []).slice().sort((a, b) => cmp(a.ServiceID, b.ServiceID) || cmp(a.CheckID, b.CheckID));
  const status = worstStatus(checks);
  return h(
    "section",
    { class: "instance", data: { instance: `${node.Node}/${svc.ID}` }, "aria-label": `Instance ${svc.ID} on ${node.Node}` },
    h(
      "header",
      { class: "instance-head" },
      statusBadge(status, "health"),
      h("h2", null, svc.ID),
      h("span", { class: "muted" }, "on"),
      h("a", { href: href.node(ctx.dc, node.Node), data: { field: "node" } }, node.Node),
    ),
    h(
      "dl",
      { class: "props" },
      prop("Address", h("code", { data: { field: "address" } }, instanceAddress(svc, node))),
      prop("Tags", tagList(svc.Tags)),
      prop("Meta", metaList(svc.Meta)),
      prop("Checks", healthSummary(countChecks(checks))),
    ),
    checkTable(checks, `Checks of ${svc.ID}`),
  );
}

function prop(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

/** Checks as table rows: status, name, id, kind (node/service), output. */
export function checkTable(checks, caption) {
  if (checks.length === 0) return h("p", { class: "muted" }, "No checks.");
  return table(
    caption,
    ["Status", "Check", "CheckID", "Scope", "Output"],
    checks.map((c) =>
      h(
        "tr",
        { data: { check: `${c.Node}/${c.CheckID}` } },
        h("td", { class: "col-status" }, statusBadge(c.Status)),
        h("th", { scope: "row", data: { field: "name" } }, c.Name || c.CheckID),
        h("td", null, h("code", null, c.CheckID)),
        h("td", null, c.ServiceID ? "service" : "node"),
        h("td", { class: "col-output" }, h("pre", { class: "output", data: { field: "output" } }, c.Output || "")),
      ),
    ),
    "grid checks",
  );
}

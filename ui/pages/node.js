// One node: its address, meta, the service instances it runs and all its
// checks, from `/v1/internal/ui/node/<node>` (404 when it is not in the
// catalog, which the page shows and keeps watching for).

import { h, fill, plural, statusBadge, worstStatus, healthSummary, countChecks, tagList, metaList, table } from "../dom.js";
import { href } from "../router.js";
import { encodeSegment } from "../api.js";
import { checkTable, instanceAddress } from "./service.js";
import { nodeChecks } from "./nodes.js";

export function render(ctx) {
  const name = ctx.params.name;
  ctx.title(`${name} - Nodes`);
  const summary = h("p", { class: "summary", role: "status" }, "Loading…");
  const body = h("div", { class: "node-body" });
  ctx.main.append(
    h(
      "div",
      { class: "page-head" },
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: href.nodes(ctx.dc) }, "Nodes"), " / "),
      h("h1", { tabindex: "-1" }, name),
      summary,
    ),
    body,
  );

  ctx.watch(
    `/v1/internal/ui/node/${encodeSegment(name)}`,
    {},
    `read node "${name}"`,
    (node) => {
      if (!node || typeof node !== "object") return notFound();
      const services = (node.Services || []).slice().sort((a, b) => cmp(a.Service, b.Service) || cmp(a.ID, b.ID));
      const checks = (node.Checks || []).slice().sort((a, b) => cmp(a.ServiceID, b.ServiceID) || cmp(a.CheckID, b.CheckID));
      fill(
        summary,
        statusBadge(worstStatus(nodeChecks(node)), "health"),
        " ",
        plural(services.length, "service instance"),
        " · checks: ",
        healthSummary(countChecks(checks)),
      );
      fill(
        body,
        h(
          "dl",
          { class: "props" },
          prop("Address", h("code", { data: { field: "address" } }, node.Address || "")),
          prop("ID", h("code", null, node.ID || "")),
          prop("Tagged addresses", metaList(node.TaggedAddresses, "tagged-addresses")),
          prop("Meta", metaList(node.Meta)),
        ),
        h("h2", null, "Service instances"),
        services.length === 0
          ? h("p", { class: "muted" }, "No services.")
          : table(
              "Service instances",
              ["Service", "ID", "Address", "Tags", "Health"],
              services.map((s) => {
                const own = checks.filter((c) => c.ServiceID === s.ID);
                return h(
                  "tr",
                  { data: { instance: `${node.Node}/${s.ID}` } },
                  h("th", { scope: "row" }, h("a", { href: href.service(ctx.dc, s.Service), data: { field: "service" } }, s.Service)),
                  h("td", null, h("code", null, s.ID)),
                  h("td", null, h("code", { data: { field: "address" } }, instanceAddress(s, node))),
                  h("td", null, tagList(s.Tags)),
                  h("td", null, healthSummary(countChecks(own))),
                );
              }),
            ),
        h("h2", null, "Checks"),
        checkTable(checks, `Checks on ${node.Node}`),
      );
      ctx.loaded();
    },
    (err) => {
      if (err.status === 404) notFound();
      else ctx.fail(err);
    },
  );

  function notFound() {
    fill(summary, "This node is not in the catalog.");
    fill(body);
    ctx.loaded();
  }
}

function prop(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

function cmp(a = "", b = "") {
  return a < b ? -1 : a > b ? 1 : 0;
}

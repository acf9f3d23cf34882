// Nodes: every node with its health (from its node-level checks, as
// Consul's UI shows it), address and service count, from
// `/v1/internal/ui/nodes`. Virtualized like the services list.

import { h, plural, worstStatus, statusBadge, healthSummary, countChecks } from "../dom.js";
import { href } from "../router.js";
import { virtualTable } from "../vtable.js";

export function render(ctx) {
  ctx.title("Nodes");
  const count = h("p", { id: "count", class: "count-line", role: "status" }, "");
  const list = virtualTable({
    caption: "Nodes",
    columns: [
      { label: "Node", class: "col-name" },
      { label: "Health", class: "col-status" },
      { label: "Address", class: "col-addr" },
      { label: "Services", class: "col-num" },
      { label: "Checks", class: "col-checks" },
    ],
    key: (n) => n.Node,
    create: (n) => {
      const tr = h(
        "tr",
        { class: "row", data: { node: n.Node } },
        h("th", { scope: "row", class: "col-name" }, h("a", { href: href.node(ctx.dc, n.Node) }, n.Node)),
        h("td", { class: "col-status" }),
        h("td", { class: "col-addr" }, h("code", { data: { field: "address" } })),
        h("td", { class: "col-num", data: { field: "services" } }),
        h("td", { class: "col-checks" }),
      );
      fillRow(tr, n);
      return tr;
    },
    update: fillRow,
    empty: "No nodes.",
  });
  ctx.main.append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Nodes"), h("div", { class: "toolbar" }, count)),
    list.el,
  );
  ctx.onLeave(() => list.destroy());

  ctx.watch("/v1/internal/ui/nodes", {}, "read nodes", (data) => {
    const nodes = Array.isArray(data) ? data : [];
    count.textContent = plural(nodes.length, "node");
    list.setItems(nodes);
    ctx.loaded();
  });
}

/** A node's own health: its checks that belong to no service. */
export function nodeChecks(node) {
  return (node.Checks || []).filter((c) => !c.ServiceID);
}

function fillRow(tr, n) {
  const cells = tr.children;
  cells[1].replaceChildren(statusBadge(worstStatus(nodeChecks(n))));
  cells[2].firstChild.textContent = n.Address || "";
  cells[3].textContent = String((n.Services || []).length);
  cells[4].replaceChildren(healthSummary(countChecks(n.Checks)));
}

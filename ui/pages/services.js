// Services: every service with its health counts, instance count and tags,
// from `/v1/internal/ui/services` (which already counts node checks once
// per node, as Consul does). The list is virtualized; the search filter
// runs over a precomputed lower-case haystack, so filtering 5,000 services
// is one pass over an array and touches only the rows in view.

import { h, plural, tagList } from "../dom.js";
import { href } from "../router.js";
import { virtualTable } from "../vtable.js";

const COUNT_FIELDS = [
  ["passing", "ChecksPassing"],
  ["warning", "ChecksWarning"],
  ["critical", "ChecksCritical"],
];

export function render(ctx) {
  const initial = ctx.query.get("filter") || "";
  ctx.title("Services");

  const search = h("input", {
    id: "search",
    type: "search",
    value: initial,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "name or tag",
  });
  const count = h("p", { id: "count", class: "count-line", role: "status" }, "");

  const list = virtualTable({
    caption: "Services",
    columns: [
      { label: "Service", class: "col-name" },
      { label: "Passing", class: "col-num col-passing" },
      { label: "Warning", class: "col-num col-warning" },
      { label: "Critical", class: "col-num col-critical" },
      { label: "Instances", class: "col-num" },
      { label: "Tags", class: "col-tags" },
    ],
    key: (s) => s.Name,
    create: (s) => {
      const tr = h(
        "tr",
        { class: "row", data: { service: s.Name } },
        h("th", { scope: "row", class: "col-name" }, h("a", { href: href.service(ctx.dc, s.Name) }, s.Name)),
        COUNT_FIELDS.map(([f]) => h("td", { class: `col-num num-${f}`, data: { field: f } })),
        h("td", { class: "col-num", data: { field: "instances" } }),
        h("td", { class: "col-tags" }),
      );
      fillRow(tr, s);
      return tr;
    },
    update: fillRow,
    empty: "No services match.",
  });

  ctx.main.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", { tabindex: "-1" }, "Services"),
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "search" }, "Search services"),
        search,
        count,
      ),
    ),
    list.el,
  );
  ctx.onLeave(() => list.destroy());

  let all = [];
  let filter = initial;

  function apply({ resetScroll }) {
    const needle = filter.trim().toLowerCase();
    const shown = needle ? all.filter((s) => s._haystack.includes(needle)) : all;
    count.textContent = plural(shown.length, "service");
    list.setItems(shown, { resetScroll });
  }

  search.addEventListener("input", () => {
    filter = search.value;
    // The filter lives in the URL (replaceState: typing is not navigation),
    // so reload and back keep it.
    const url = href.services(ctx.dc, filter);
    history.replaceState(history.state, "", url);
    apply({ resetScroll: true });
  });

  ctx.watch("/v1/internal/ui/services", {}, "read services", (data) => {
    all = (Array.isArray(data) ? data : []).map((s) => {
      s._haystack = [s.Name, ...(s.Tags || [])].join("\n").toLowerCase();
      return s;
    });
    apply({ resetScroll: false });
    ctx.loaded();
  });
}

function fillRow(tr, s) {
  const cells = tr.children;
  COUNT_FIELDS.forEach(([f, prop], i) => {
    const td = cells[1 + i];
    const n = Number(s[prop]) || 0;
    td.textContent = String(n);
    td.classList.toggle("zero", n === 0);
  });
  cells[4].textContent = String(s.InstanceCount ?? 0);
  const tags = tagList(s.Tags);
  tags.title = (s.Tags || []).join(", ");
  cells[5].replaceChildren(tags);
}

// A virtualized table for long lists (thousands of services, nodes, keys).
//
// The table sits in its own scroll box. Every row has the same height, so
// the rows in view follow from scrollTop alone: only those plus a buffer
// above and below exist in the DOM, between two spacer rows whose heights
// stand in for everything else. Filtering or a blocking-query update swaps
// the item array and touches only the rows in view; scrolling moves the
// window. Rows are keyed, so a row that stays in view is the same element
// (its focus and selection survive) and a changed item only has its cells
// rewritten.

import { h } from "./dom.js";

const BUFFER_ROWS = 20;
const FALLBACK_ROW_HEIGHT = 29;

/**
 * `columns`: [{label, class}] for the header.
 * `key(item)`: a stable string per item.
 * `create(item)`: a new `<tr>` for an item.
 * `update(tr, item)`: rewrites a row for a changed item.
 * `empty`: text shown when there are no items.
 */
export function virtualTable({ caption, columns, key, create, update, empty = "Nothing here." }) {
  const top = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: columns.length }));
  const bottom = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: columns.length }));
  const tbody = h("tbody", null, top, bottom);
  const thead = h(
    "thead",
    null,
    h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label))),
  );
  const tableEl = h(
    "table",
    { class: "grid virtual" },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    thead,
    tbody,
  );
  const emptyEl = h("p", { class: "empty", hidden: true }, empty);
  const scroller = h("div", { class: "vscroll", tabindex: "0", "aria-label": caption || "list" }, tableEl);
  const root = h("div", { class: "vtable" }, scroller, emptyEl);

  let items = [];
  let rowHeight = 0;
  const rows = new Map(); // key -> tr currently in the DOM
  let frame = 0;

  function measure() {
    if (rowHeight) return rowHeight;
    const first = top.nextElementSibling;
    if (first && first !== bottom) {
      const hgt = first.getBoundingClientRect().height;
      if (hgt > 0) rowHeight = hgt;
    }
    return rowHeight || FALLBACK_ROW_HEIGHT;
  }

  function render() {
    frame = 0;
    const rh = measure();
    const n = items.length;
    emptyEl.hidden = n !== 0;
    scroller.hidden = n === 0;
    // The box grows with its rows up to its max-height, so its current
    // height can be less than what it is about to show: cover the window.
    const view = Math.max(scroller.clientHeight, window.innerHeight);
    const headH = thead.offsetHeight || 0;
    const scrollTop = Math.max(0, scroller.scrollTop - headH);
    const first = Math.max(0, Math.floor(scrollTop / rh) - BUFFER_ROWS);
    const last = Math.min(n, Math.ceil((scrollTop + view) / rh) + BUFFER_ROWS);

    const wanted = [];
    const wantedKeys = new Set();
    for (let i = first; i < last; i++) {
      const item = items[i];
      const k = key(item);
      wantedKeys.add(k);
      let tr = rows.get(k);
      if (!tr) {
        tr = create(item);
        tr._item = item;
        rows.set(k, tr);
      } else if (tr._item !== item) {
        update(tr, item);
        tr._item = item;
      }
      wanted.push(tr);
    }
    // Remove rows that left the window first, so the ones that stay are
    // never detached (a detached element loses focus).
    for (const [k, tr] of rows) {
      if (!wantedKeys.has(k)) {
        tr.remove();
        rows.delete(k);
      }
    }
    let cursor = top.nextSibling;
    for (const tr of wanted) {
      if (cursor === tr) cursor = cursor.nextSibling;
      else tbody.insertBefore(tr, cursor);
    }
    setSpacer(top, first * rh);
    setSpacer(bottom, (n - last) * rh);
    // The first real row tells the true height (borders, zoom, fonts).
    if (!rowHeight && wanted.length) {
      const before = rh;
      if (measure() !== before) schedule();
    }
  }

  function setSpacer(tr, px) {
    tr.hidden = px <= 0;
    tr.firstChild.style.height = `${px}px`;
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(render);
  }

  scroller.addEventListener("scroll", schedule, { passive: true });
  const resize = new ResizeObserver(schedule);
  resize.observe(scroller);

  return {
    el: root,
    /** Replaces the items; `resetScroll` jumps to the top (a new filter). */
    setItems(next, { resetScroll = false } = {}) {
      items = next;
      if (resetScroll) scroller.scrollTop = 0;
      render();
    },
    /** Number of row elements in the DOM (for the tests and the benchmark). */
    rowCount: () => rows.size,
    destroy() {
      resize.disconnect();
      if (frame) cancelAnimationFrame(frame);
    },
  };
}

// The shell: reads the server's UI config, routes the location to a page,
// owns the header (navigation, datacenter switcher), the connection and
// error banners, and the per-page lifecycle. Each page gets a context with
// an AbortSignal; leaving the page aborts it, which cancels its long-polls.

import { request, watch, describeError, onConnectionChange, getToken, NetworkError } from "./api.js";
import { parse, href, setBase, getBase } from "./router.js";
import { h } from "./dom.js";
import * as services from "./pages/services.js";
import * as service from "./pages/service.js";
import * as nodes from "./pages/nodes.js";
import * as node from "./pages/node.js";
import * as kv from "./pages/kv.js";
import * as acl from "./pages/acl.js";
import * as login from "./pages/login.js";

const PAGES = {
  services: services.render,
  service: service.render,
  nodes: nodes.render,
  node: node.render,
  "kv-folder": kv.renderFolder,
  "kv-edit": kv.renderEdit,
  "kv-create": kv.renderCreate,
  tokens: acl.renderTokens,
  policies: acl.renderPolicies,
  login: login.render,
  notfound: renderNotFound,
};

// Which nav link is current for each page.
const SECTION = {
  services: "services",
  service: "services",
  nodes: "nodes",
  node: "nodes",
  "kv-folder": "kv",
  "kv-edit": "kv",
  "kv-create": "kv",
  tokens: "acls",
  policies: "acls",
  login: "login",
};

function readConfig() {
  const defaults = { ContentPath: "/ui/", ACLsEnabled: false, LocalDatacenter: "", Version: "" };
  const el = document.getElementById("ui-config");
  try {
    return { ...defaults, ...JSON.parse(el ? el.textContent : "{}") };
  } catch {
    // Served without the substitution (a plain file server): run on defaults.
    return defaults;
  }
}

const config = readConfig();
setBase(config.ContentPath || "/ui/");

const main = document.getElementById("main");
const conn = document.getElementById("conn");
const errorBox = document.getElementById("error");
const dcSelect = document.getElementById("dc-select");

let current = null; // {controller, leave: [fn], dc}
let datacenters = null;

// ------------------------------------------------------------ banners

onConnectionChange((ok) => {
  conn.dataset.state = ok ? "ok" : "disconnected";
  conn.textContent = ok ? "" : "disconnected, retrying";
  conn.hidden = ok;
  // A page whose first load failed for lack of a connection gets its data
  // once the watch retries; a failed list of datacenters is retried here.
  if (ok && datacenters === null) loadDatacenters();
});

function showError(err) {
  if (!err || err.name === "AbortError" || err instanceof NetworkError) return;
  errorBox.textContent = describeError(err);
  errorBox.hidden = false;
}

function clearError() {
  errorBox.textContent = "";
  errorBox.hidden = true;
}

// ------------------------------------------------------------ header

function setupNav() {
  if (config.ACLsEnabled) {
    const list = document.querySelector(".nav");
    list.append(h("li", null, h("a", { id: "nav-acls", href: getBase() }, "ACL")));
  }
}

function updateNav(route) {
  const dc = route.dc;
  const links = {
    services: href.services(dc),
    nodes: href.nodes(dc),
    kv: href.kvFolder(dc, ""),
    acls: href.tokens(dc),
    login: href.login(dc),
  };
  for (const [section, url] of Object.entries(links)) {
    const a = document.getElementById(`nav-${section}`);
    if (!a) continue;
    a.href = url;
    if (SECTION[route.page] === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const loginLink = document.getElementById("nav-login");
  loginLink.textContent = getToken() ? "Token" : "Log in";
  document.querySelector(".brand").href = href.services(dc);
  fillDcSelect(dc);
}

function fillDcSelect(dc) {
  const names = new Set(datacenters || []);
  if (dc) names.add(dc);
  const wanted = [...names].sort();
  const have = [...dcSelect.options].map((o) => o.value);
  if (wanted.join("\n") !== have.join("\n")) {
    dcSelect.replaceChildren(...wanted.map((n) => h("option", { value: n }, n)));
  }
  dcSelect.value = dc;
}

async function loadDatacenters() {
  try {
    const res = await request("/v1/catalog/datacenters", { action: "list datacenters" });
    datacenters = Array.isArray(res.data) ? res.data : [];
    if (current) fillDcSelect(current.dc);
  } catch {
    // Retried when the connection comes back (see onConnectionChange).
  }
}

dcSelect.addEventListener("change", () => {
  const route = parse(location.pathname, location.search);
  const section = SECTION[route.page] || "services";
  const dc = dcSelect.value;
  // The same section in the other datacenter; a detail page becomes its
  // list, since the service or key may not exist there.
  const target = {
    services: href.services(dc),
    nodes: href.nodes(dc),
    kv: href.kvFolder(dc, ""),
    acls: route.page === "policies" ? href.policies(dc) : href.tokens(dc),
    login: href.login(dc),
  }[section];
  navigate(target);
});

// ------------------------------------------------------------ routing

export function navigate(url, { replace = false, flash = null } = {}) {
  const state = flash ? { flash } : null;
  if (replace) history.replaceState(state, "", url);
  else history.pushState(state, "", url);
  route({ focus: !replace });
}

document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(getBase().slice(0, -1))) return;
  // In-page anchors (the skip link) keep their default behaviour.
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  ev.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) return;
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => route({ focus: false }));

// Leaving the document (another site, a reload, a typed URL) must cancel
// the long-polls too: otherwise Chromium keeps their sockets busy until the
// server's wait runs out, and with six connections per host the next page
// of this agent stalls behind them. A page restored from the back/forward
// cache starts its watches again.
window.addEventListener("pagehide", () => leave());
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) route({ focus: false });
});

function leave() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.leave) {
    try {
      fn();
    } catch {
      // A page's clean-up failing must not block the next page.
    }
  }
  current = null;
}

function route({ focus }) {
  const r = parse(location.pathname, location.search);
  if (r.page === "root" || r.page === "dc") {
    const dc = r.dc || config.LocalDatacenter || (datacenters && datacenters[0]) || "dc1";
    history.replaceState(null, "", href.services(dc));
    return route({ focus });
  }
  leave();
  clearError();
  const controller = new AbortController();
  const page = { controller, leave: [], dc: r.dc };
  current = page;
  document.body.dataset.page = r.page;
  document.body.dataset.loaded = "false";
  main.replaceChildren();
  updateNav(r);

  const ctx = makeContext(r, page);
  try {
    (PAGES[r.page] || renderNotFound)(ctx);
  } catch (err) {
    // A bug in a page shows as an error, not as a blank screen.
    showError(err);
    ctx.loaded();
  }
  if (focus) {
    const heading = main.querySelector("h1");
    if (heading && !main.contains(document.activeElement)) heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
}

function makeContext(r, page) {
  const { signal } = page.controller;
  const live = () => current === page && !signal.aborted;
  return {
    dc: r.dc,
    params: r.params,
    query: r.query,
    config,
    main,
    signal,
    href,
    flash: (history.state && history.state.flash) || null,
    title(text) {
      document.title = `${text} - ${r.dc} - cairn`;
    },
    loaded() {
      if (live()) document.body.dataset.loaded = "true";
    },
    onLeave(fn) {
      page.leave.push(fn);
    },
    fail(err) {
      if (live()) showError(err);
    },
    clearError() {
      if (live()) clearError();
    },
    navigate,
    tokenChanged() {
      updateNav(r);
    },
    /** One request in this datacenter. Reads are cancelled with the page;
     *  writes are not, so leaving never half-cancels a save. */
    request(path, opts = {}) {
      const method = opts.method || "GET";
      return request(path, { ...opts, dc: r.dc, signal: method === "GET" ? opts.signal || signal : undefined });
    },
    /**
     * Watches `path` with blocking queries while the page is shown.
     * `onError` (optional) sees failed attempts instead of the error banner.
     * Returns `{restart}` to re-read at once (after a write of our own).
     */
    watch(path, params, action, onData, onError) {
      let sub = null;
      const start = () => {
        if (sub) sub.abort();
        sub = new AbortController();
        const subSignal = sub.signal;
        signal.addEventListener("abort", () => sub.abort(), { once: true });
        watch(
          path,
          { dc: r.dc, params, action, signal: subSignal },
          (data, index) => {
            if (!live()) return;
            clearError();
            onData(data, index);
          },
          (err) => {
            if (!live()) return;
            if (onError) onError(err);
            else showError(err);
            // The page is still usable (it shows the error), so it counts
            // as loaded for whoever waits on it.
            if (!(err instanceof NetworkError)) document.body.dataset.loaded = "true";
          },
        );
      };
      start();
      return { restart: start };
    },
  };
}

function renderNotFound(ctx) {
  ctx.title("Not found");
  ctx.main.append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Page not found")),
    h("p", null, "There is no page at this address. ", h("a", { href: href.services(ctx.dc || config.LocalDatacenter || "dc1") }, "Go to services"), "."),
  );
  ctx.loaded();
}

setupNav();
loadDatacenters();
route({ focus: false });

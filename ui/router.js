// Routes: URL paths under the content path <-> named pages with parameters.
// Every name in a URL is encodeURIComponent'ed per segment, so service,
// node and key names survive any character; KV routes put their verb last
// (`<key>/edit`, `<folder>/create`), so a key called "create" or "edit"
// never clashes with a page (Consul UI issue #5866).

let base = "/ui/";

export function setBase(contentPath) {
  base = contentPath.endsWith("/") ? contentPath : `${contentPath}/`;
}

export function getBase() {
  return base;
}

const enc = encodeURIComponent;

function decode(seg) {
  try {
    return decodeURIComponent(seg);
  } catch {
    return seg;
  }
}

function encodePath(key) {
  return key.split("/").map(enc).join("/");
}

function decodePath(raw) {
  return raw.split("/").map(decode).join("/");
}

/** URL builders, one per page. */
export const href = {
  root: () => base,
  services: (dc, filter) =>
    `${base}${enc(dc)}/services${filter ? `?filter=${enc(filter)}` : ""}`,
  service: (dc, name) => `${base}${enc(dc)}/services/${enc(name)}`,
  nodes: (dc) => `${base}${enc(dc)}/nodes`,
  node: (dc, name) => `${base}${enc(dc)}/nodes/${enc(name)}`,
  /** `prefix` is "" for the root or a folder key ending in "/". */
  kvFolder: (dc, prefix) => `${base}${enc(dc)}/kv/${encodePath(prefix)}`,
  kvEdit: (dc, key) => `${base}${enc(dc)}/kv/${encodePath(key)}/edit`,
  kvCreate: (dc, prefix) => `${base}${enc(dc)}/kv/${encodePath(prefix)}create`,
  tokens: (dc) => `${base}${enc(dc)}/acls/tokens`,
  policies: (dc) => `${base}${enc(dc)}/acls/policies`,
  login: (dc) => `${base}${enc(dc)}/login`,
};

/**
 * Parses a location into `{page, dc, params, query}`. `page` is one of the
 * body[data-page] names, or "root" (redirect to the local datacenter) or
 * "dc" (redirect to that datacenter's services).
 */
export function parse(pathname, search) {
  const query = new URLSearchParams(search);
  let rest;
  if (pathname === base.slice(0, -1) || pathname === base) rest = "";
  else if (pathname.startsWith(base)) rest = pathname.slice(base.length);
  else return { page: "notfound", dc: "", params: {}, query };
  if (rest === "") return { page: "root", dc: "", params: {}, query };

  const slash = rest.indexOf("/");
  const dc = decode(slash < 0 ? rest : rest.slice(0, slash));
  const tail = slash < 0 ? "" : rest.slice(slash + 1);
  const route = (page, params = {}) => ({ page, dc, params, query });
  if (tail === "") return route("dc");

  const section = tail.split("/")[0];
  const after = tail.slice(section.length + 1);
  switch (section) {
    case "services":
      if (after === "") return route("services");
      if (!after.includes("/")) return route("service", { name: decode(after) });
      break;
    case "nodes":
      if (after === "") return route("nodes");
      if (!after.includes("/")) return route("node", { name: decode(after) });
      break;
    case "kv":
      return parseKv(after, route);
    case "acls":
      if (after === "" || after === "tokens") return route("tokens");
      if (after === "policies") return route("policies");
      break;
    case "login":
      if (after === "") return route("login");
      break;
  }
  return route("notfound");
}

function parseKv(raw, route) {
  if (raw === "" || raw.endsWith("/")) return route("kv-folder", { prefix: decodePath(raw) });
  if (raw === "create") return route("kv-create", { prefix: "" });
  if (raw.endsWith("/create")) {
    return route("kv-create", { prefix: decodePath(raw.slice(0, -"create".length)) });
  }
  if (raw.endsWith("/edit")) return route("kv-edit", { key: decodePath(raw.slice(0, -"/edit".length)) });
  // A bare key path (typed by hand): open its editor.
  return route("kv-edit", { key: decodePath(raw), bare: true });
}

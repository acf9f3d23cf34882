// HTTP client for the agent's API: datacenter and token on every request,
// typed errors, the connection state, and blocking-query watches.
//
// Blocking queries follow Consul's rules (api-docs/features/blocking.mdx):
// send the last X-Consul-Index as ?index= with no ?wait (the server default),
// treat an unchanged index as "nothing new", and reset to 0 when the index
// goes backwards (a snapshot restore or a new leader with an older store).

const TOKEN_KEY = "cairn:token";

// The longest pause between retries once the agent is unreachable.
const MAX_BACKOFF_MS = 5000;
const FIRST_BACKOFF_MS = 250;
// An endpoint that answers without X-Consul-Index cannot block; it is
// re-read at this interval instead of in a tight loop.
const NON_BLOCKING_REFRESH_MS = 5000;

/** An HTTP answer other than 2xx. `action` says what was attempted, in
 *  words that complete "This token cannot …". */
export class ApiError extends Error {
  constructor(status, body, action, index) {
    super(body || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.action = action;
    this.index = index;
  }
}

/** The request never got an HTTP answer (agent down, connection reset). */
export class NetworkError extends Error {}

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

let connListener = () => {};
let connected = true;

/** `fn(ok: boolean)` is called whenever reachability changes. */
export function onConnectionChange(fn) {
  connListener = fn;
}

function setConnected(ok) {
  if (ok === connected) return;
  connected = ok;
  connListener(ok);
}

/** Encodes one path segment. A segment that is "." or ".." cannot be sent
 *  at all (URL parsing removes it, and its %2E forms, before the request
 *  leaves the browser); the KV editor refuses such keys itself. */
export function encodeSegment(s) {
  return encodeURIComponent(s);
}

/** Encodes a KV key for `/v1/kv/<key>`, keeping its `/` separators. */
export function encodeKey(key) {
  return key.split("/").map(encodeSegment).join("/");
}

function buildUrl(path, dc, params) {
  const q = new URLSearchParams();
  if (dc) q.set("dc", dc);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === false) continue;
    q.set(k, v === true ? "" : String(v));
  }
  // Presence flags (?keys, ?recurse) are sent bare, as Consul's own UI does.
  const qs = q.toString().replace(/=(?=&|$)/g, "");
  return qs ? `${path}?${qs}` : path;
}

function parseIndex(headers) {
  const raw = headers.get("X-Consul-Index");
  if (raw === null || raw === "") return null;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

/**
 * One request. Resolves to `{data, index, status}`; `data` is the parsed
 * JSON body (or the text when it is not JSON, or null when empty).
 * Rejects with ApiError for non-2xx answers and NetworkError when the agent
 * cannot be reached; an abort rejects with the DOMException "AbortError".
 */
export async function request(path, opts = {}) {
  const { dc, params, method = "GET", body, signal, action = "do this" } = opts;
  const headers = {};
  // `opts.token` checks a token before it is stored (the login page).
  const token = opts.token !== undefined ? opts.token : getToken();
  if (token) headers["X-Consul-Token"] = token;
  if (body !== undefined) {
    headers["Content-Type"] =
      typeof body === "string" && !opts.json
        ? "text/plain; charset=utf-8"
        : "application/json";
  }
  let resp;
  try {
    resp = await fetch(buildUrl(path, dc, params), {
      method,
      headers,
      body: body === undefined ? undefined : opts.json ? JSON.stringify(body) : body,
      signal,
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    setConnected(false);
    throw new NetworkError(e.message || "network error");
  }
  let text;
  try {
    text = await resp.text();
  } catch (e) {
    if (e.name === "AbortError") throw e;
    setConnected(false);
    throw new NetworkError(e.message || "connection lost");
  }
  setConnected(true);
  const index = parseIndex(resp.headers);
  if (!resp.ok) throw new ApiError(resp.status, text.trim(), action, index);
  let data = null;
  if (text !== "") {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  return { data, index, status: resp.status };
}

/** The sentence shown for a failed request. */
export function describeError(err) {
  if (err instanceof ApiError) {
    if (err.status === 403) {
      return `This token cannot ${err.action}. (403: ${err.body || "Permission denied"})`;
    }
    return `Error ${err.status}: ${err.body || "no details"}`;
  }
  if (err instanceof NetworkError) return "The agent cannot be reached.";
  return String((err && err.message) || err);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener("abort", done);
      resolve();
    }
    if (signal) signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Long-polls `path` until `opts.signal` aborts. `onData(data, index)` runs
 * for the first answer and then only when X-Consul-Index changes, so an
 * unchanged answer (the server's wait ran out) costs no re-render.
 * `onError(err)` runs for failed attempts; the watch then retries with
 * backoff (≤ 5 s) by itself. A 404 that carries an index (a KV prefix that
 * does not exist yet, an unknown node) is an answer too: it is reported once
 * per index and the watch keeps blocking on that index.
 */
export function watch(path, opts, onData, onError = () => {}) {
  const { signal, params = {} } = opts;
  let index = 0;
  let delivered = null;
  let failures = 0;
  (async () => {
    while (!signal.aborted) {
      const sent = index;
      const started = performance.now();
      const p = { ...params };
      if (sent > 0) p.index = sent;
      let got;
      try {
        const res = await request(path, { ...opts, params: p });
        if (signal.aborted) return;
        failures = 0;
        if (res.index === null) {
          delivered = null;
          onData(res.data, null);
          await sleep(NON_BLOCKING_REFRESH_MS, signal);
          continue;
        }
        got = res.index;
        if (delivered !== `ok:${got}`) {
          delivered = `ok:${got}`;
          onData(res.data, got);
        }
      } catch (err) {
        if (signal.aborted || err.name === "AbortError") return;
        if (err instanceof ApiError && err.status === 404 && err.index !== null) {
          failures = 0;
          got = err.index;
          if (delivered !== `404:${got}`) {
            delivered = `404:${got}`;
            onError(err);
          }
        } else {
          // Start over with a non-blocking read, so the first answer after
          // the failure shows at once instead of after a full wait.
          index = 0;
          delivered = null;
          onError(err);
          failures += 1;
          await sleep(Math.min(FIRST_BACKOFF_MS * 2 ** (failures - 1), MAX_BACKOFF_MS), signal);
          continue;
        }
      }
      index = nextIndex(sent, got);
      // A server that answers an unchanged index at once is not blocking;
      // pace it rather than spin.
      if (sent > 0 && got === sent && performance.now() - started < 50) {
        await sleep(1000, signal);
      }
    }
  })();
}

/** Consul's rule for the next ?index=: a value that went backwards (or an
 *  invalid 0) restarts from 0, which makes the next request return at once. */
export function nextIndex(prev, got) {
  if (!(got > 0)) return 0;
  if (got < prev) return 0;
  return got;
}

// Key/Value: folder listing (`?keys&separator=/`, blocking), the editor
// for an existing key (saved with `?cas=<ModifyIndex it loaded>`, so a
// concurrent change is refused instead of overwritten) and the create form
// (`?cas=0`: create only). Values travel as raw bytes on PUT and base64 in
// GET JSON; they are decoded as UTF-8 and shown as text. Whatever the user
// typed stays in the form when a save fails.

import { h, fill, plural } from "../dom.js";
import { href } from "../router.js";
import { encodeKey, describeError, ApiError, NetworkError } from "../api.js";
import { virtualTable } from "../vtable.js";

// Consul's kv_max_value_size default; the server may be configured with
// another limit and passes it in the UI config when it does.
const DEFAULT_MAX_VALUE = 512 * 1024;

const STALE_MESSAGE =
  "This key was changed by someone else since you opened it. Reload to see the new value.";

/** The folder a key or folder lives in: "a/b/c" and "a/b/c/" -> "a/b/". */
export function parentOf(key) {
  const trimmed = key.endsWith("/") ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf("/");
  return i < 0 ? "" : trimmed.slice(0, i + 1);
}

/** base64 (GET JSON) -> text. Bytes that are not UTF-8 are reported, not
 *  silently mangled. */
export function decodeValue(b64) {
  if (b64 === null || b64 === undefined || b64 === "") return { text: "", binary: false };
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false };
  } catch {
    return { text: new TextDecoder("utf-8").decode(bytes), binary: true };
  }
}

function maxValueSize(ctx) {
  const n = Number(ctx.config.KVMaxValueSize);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_MAX_VALUE;
}

/** The server's 413 text, produced before sending a value that cannot fit. */
function tooLarge(len, max) {
  return `Request body(${len} bytes) too large, max size: ${max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.`;
}

/** Why a key cannot be sent at all, or null. URL parsing removes "." and
 *  ".." segments (also as %2E) before a request leaves the browser, so such
 *  a key would silently address another one; the server refuses ".." as
 *  traversal anyway, and this is its text. */
function unsendableKey(key) {
  const segs = key.split("/");
  if (segs.some((s) => s === "..")) return "URL path contains invalid traversal sequence";
  if (segs.some((s) => s === ".")) return 'Key segments cannot be "." (URLs cannot carry them).';
  return null;
}

function crumbs(ctx, prefix, last) {
  const parts = [h("a", { href: href.kvFolder(ctx.dc, "") }, "Key/Value")];
  let acc = "";
  const segs = prefix.split("/").filter((_, i, a) => i < a.length - 1);
  for (const s of segs) {
    acc += `${s}/`;
    parts.push(" / ", h("a", { href: href.kvFolder(ctx.dc, acc) }, s || "(empty)"));
  }
  if (last) parts.push(" / ");
  return h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, parts);
}

function apiMessage(err) {
  if (err instanceof ApiError && err.status !== 403) return err.body || `Error ${err.status}`;
  if (err instanceof NetworkError) return "The agent cannot be reached; nothing was saved.";
  return describeError(err);
}

// ---------------------------------------------------------------- folder

export function renderFolder(ctx) {
  const prefix = ctx.params.prefix;
  ctx.title(prefix ? `${prefix} - Key/Value` : "Key/Value");
  const count = h("p", { id: "count", class: "count-line", role: "status" }, "");
  const list = virtualTable({
    caption: prefix ? `Keys in ${prefix}` : "Keys",
    columns: [
      { label: "Name", class: "col-key" },
      { label: "Kind", class: "col-kind" },
      { label: "Actions", class: "col-actions" },
    ],
    key: (k) => k,
    create: (k) => {
      const folder = k.endsWith("/");
      const label = k.slice(prefix.length) || k;
      return h(
        "tr",
        { class: "row", data: { key: k } },
        h(
          "th",
          { scope: "row", class: "col-key" },
          h("a", { href: folder ? href.kvFolder(ctx.dc, k) : href.kvEdit(ctx.dc, k), class: folder ? "folder" : "key" }, label),
        ),
        h("td", { class: "col-kind" }, folder ? "folder" : "key"),
        h(
          "td",
          { class: "col-actions" },
          h(
            "button",
            { type: "button", class: "link danger", data: { action: "delete" }, "aria-label": `Delete ${k}`, on: { click: () => remove(k) } },
            "Delete",
          ),
        ),
      );
    },
    update: () => {},
    empty: "This folder is empty.",
  });
  ctx.main.append(
    h(
      "div",
      { class: "page-head" },
      crumbs(ctx, prefix, true),
      h("h1", { tabindex: "-1" }, prefix ? prefix.slice(parentOf(prefix).length) : "Key/Value"),
      h("div", { class: "toolbar" }, h("a", { id: "kv-create", class: "button", href: href.kvCreate(ctx.dc, prefix) }, "Create"), count),
    ),
    list.el,
  );
  ctx.onLeave(() => list.destroy());

  function show(keys) {
    // The folder's own key ("a/" when it was created explicitly) is the
    // folder itself, not an entry in it.
    const entries = keys.filter((k) => k !== prefix);
    count.textContent = plural(entries.length, "entry", "entries");
    list.setItems(entries);
    ctx.loaded();
  }

  ctx.watch(
    `/v1/kv/${encodeKey(prefix)}`,
    { keys: true, separator: "/" },
    prefix ? `list keys under "${prefix}"` : "list keys",
    (data) => show(Array.isArray(data) ? data : []),
    (err) => {
      // Consul answers 404 for a prefix with nothing under it.
      if (err.status === 404) show([]);
      else ctx.fail(err);
    },
  );

  async function remove(key) {
    const folder = key.endsWith("/");
    const question = folder ? `Delete the folder "${key}" and every key in it?` : `Delete the key "${key}"?`;
    if (!confirm(question)) return;
    try {
      await ctx.request(`/v1/kv/${encodeKey(key)}`, {
        method: "DELETE",
        params: folder ? { recurse: true } : {},
        action: `delete key "${key}"`,
      });
      ctx.clearError();
    } catch (err) {
      ctx.fail(err);
    }
  }
}

// ---------------------------------------------------------------- editor

function editorForm(ctx, { create, prefix, key }) {
  const message = h("div", { id: "kv-message", role: "status", class: "message" });
  const value = h("textarea", { id: "kv-value", rows: "16", spellcheck: "false", autocomplete: "off" });
  const format = h(
    "select",
    { id: "kv-format" },
    h("option", { value: "text" }, "Text"),
    h("option", { value: "json" }, "JSON"),
  );
  const save = h("button", { id: "kv-save", type: "submit", class: "primary" }, "Save");
  const del = create ? null : h("button", { id: "kv-delete", type: "button", class: "danger" }, "Delete");
  const keyInput = create
    ? h("input", { id: "kv-key", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "name, or folder/ to make a folder" })
    : null;

  const form = h(
    "form",
    { class: "editor", novalidate: true },
    create
      ? h(
          "div",
          { class: "field" },
          h("label", { for: "kv-key" }, "Key name"),
          h("div", { class: "key-input" }, prefix ? h("code", { class: "prefix" }, prefix) : null, keyInput),
        )
      : h("div", { class: "field" }, h("span", { class: "field-label" }, "Key"), h("code", { class: "key-name" }, key)),
    h(
      "div",
      { class: "field" },
      h(
        "div",
        { class: "value-head" },
        h("label", { for: "kv-value" }, "Value"),
        h("span", { class: "format" }, h("label", { for: "kv-format" }, "View as"), format),
      ),
      value,
    ),
    h("div", { class: "actions" }, save, del),
    message,
  );

  const say = (text, kind = "info") => {
    message.textContent = text;
    message.dataset.kind = kind;
  };

  format.addEventListener("change", () => {
    if (format.value !== "json") return say("");
    try {
      value.value = JSON.stringify(JSON.parse(value.value), null, 2);
      say("");
    } catch (e) {
      say(`Not valid JSON: ${e.message}`, "error");
    }
  });

  /** Checks that apply before any request: JSON validity in JSON view and
   *  the size limit. Returns the text to send, or null (message shown). */
  function checkedValue() {
    const text = value.value;
    if (format.value === "json") {
      try {
        JSON.parse(text);
      } catch (e) {
        say(`Not valid JSON: ${e.message}. Switch the view to Text to save it as it is.`, "error");
        return null;
      }
    }
    const len = new TextEncoder().encode(text).length;
    const max = maxValueSize(ctx);
    if (len > max) {
      say(tooLarge(len, max), "error");
      return null;
    }
    return text;
  }

  return { form, message, value, format, save, del, keyInput, say, checkedValue };
}

export function renderCreate(ctx) {
  const prefix = ctx.params.prefix;
  ctx.title(`Create key${prefix ? ` in ${prefix}` : ""} - Key/Value`);
  const ed = editorForm(ctx, { create: true, prefix });
  ctx.main.append(
    h("div", { class: "page-head" }, crumbs(ctx, prefix, true), h("h1", { tabindex: "-1" }, "New key")),
    ed.form,
  );
  ed.keyInput.focus();
  ctx.loaded();

  let busy = false;
  ed.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy) return;
    const name = ed.keyInput.value;
    if (name === "") return ed.say("Missing key name", "error");
    const key = prefix + name;
    const bad = unsendableKey(key);
    if (bad) return ed.say(bad, "error");
    const folder = key.endsWith("/");
    const text = folder ? "" : ed.checkedValue();
    if (text === null) return;
    busy = true;
    ed.save.disabled = true;
    ed.say("Saving…");
    try {
      const res = await ctx.request(`/v1/kv/${encodeKey(key)}`, {
        method: "PUT",
        params: { cas: 0 },
        body: text,
        action: `write key "${key}"`,
      });
      if (res.data === false) {
        ed.say(`A key named "${key}" already exists. Open it from its folder to edit it.`, "error");
        return;
      }
      ed.say("Saved.", "ok");
      ctx.navigate(folder ? href.kvFolder(ctx.dc, key) : href.kvEdit(ctx.dc, key), { flash: "Saved." });
    } catch (err) {
      ed.say(apiMessage(err), "error");
      if (err instanceof ApiError && err.status === 403) ctx.fail(err);
    } finally {
      busy = false;
      ed.save.disabled = false;
    }
  });
}

export function renderEdit(ctx) {
  const key = ctx.params.key;
  if (ctx.params.bare) {
    // /kv/<key> without a verb: the canonical address is <key>/edit.
    history.replaceState(history.state, "", href.kvEdit(ctx.dc, key));
  }
  ctx.title(`${key} - Key/Value`);
  const ed = editorForm(ctx, { create: false, key });
  ctx.main.append(
    h(
      "div",
      { class: "page-head" },
      crumbs(ctx, key, true),
      h("h1", { tabindex: "-1" }, key.slice(parentOf(key).length)),
    ),
    ed.form,
  );
  ed.form.hidden = true;
  const missing = h("div", { class: "missing", hidden: true });
  ctx.main.append(missing);

  let loadedIndex = 0;
  let flags = 0;

  async function load() {
    const res = await ctx.request(`/v1/kv/${encodeKey(key)}`, { action: `read key "${key}"`, signal: ctx.signal });
    const entry = Array.isArray(res.data) ? res.data[0] : null;
    if (!entry) throw new ApiError(404, "", `read key "${key}"`, res.index);
    return entry;
  }

  load()
    .then((entry) => {
      loadedIndex = entry.ModifyIndex;
      flags = entry.Flags || 0;
      const { text, binary } = decodeValue(entry.Value);
      ed.value.value = text;
      ed.form.hidden = false;
      if (ctx.flash) {
        ed.say(ctx.flash, "ok");
        // Shown once: a reload or a return through history starts clean.
        history.replaceState(null, "", location.href);
      }
      else if (binary) {
        ed.say("This value is not valid UTF-8 text; it is shown with replacement characters and saving replaces it.", "error");
      }
      ctx.loaded();
    })
    .catch((err) => {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 404) {
        fill(
          missing,
          h("p", null, "This key does not exist."),
          h("p", null, h("a", { href: href.kvCreate(ctx.dc, parentOf(key)) }, "Create a key in this folder")),
        );
        missing.hidden = false;
      } else {
        ctx.fail(err);
        fill(missing, h("p", null, describeError(err)));
        missing.hidden = false;
      }
      ctx.loaded();
    });

  let busy = false;
  ed.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy) return;
    const text = ed.checkedValue();
    if (text === null) return;
    busy = true;
    ed.save.disabled = true;
    ed.say("Saving…");
    try {
      const params = { cas: loadedIndex };
      if (flags) params.flags = flags;
      const res = await ctx.request(`/v1/kv/${encodeKey(key)}`, {
        method: "PUT",
        params,
        body: text,
        action: `write key "${key}"`,
      });
      if (res.data === false) {
        ed.say(STALE_MESSAGE, "error");
        return;
      }
      // The next save must be checked against this write. The PUT answers
      // only `true`, so read the entry back; if it no longer holds what
      // was written, someone else wrote in between and keeping the old
      // index makes the next save refuse instead of overwrite them.
      try {
        const entry = await load();
        if (decodeValue(entry.Value).text === text) loadedIndex = entry.ModifyIndex;
      } catch {
        // Deleted or unreadable right after the write: keep the old index.
      }
      ed.say("Saved.", "ok");
    } catch (err) {
      ed.say(apiMessage(err), "error");
      if (err instanceof ApiError && err.status === 403) ctx.fail(err);
    } finally {
      busy = false;
      ed.save.disabled = false;
    }
  });

  ed.del.addEventListener("click", async () => {
    if (busy) return;
    if (!confirm(`Delete the key "${key}"?`)) return;
    busy = true;
    try {
      await ctx.request(`/v1/kv/${encodeKey(key)}`, { method: "DELETE", action: `delete key "${key}"` });
      ctx.navigate(href.kvFolder(ctx.dc, parentOf(key)));
    } catch (err) {
      ed.say(apiMessage(err), "error");
      if (err instanceof ApiError && err.status === 403) ctx.fail(err);
    } finally {
      busy = false;
    }
  });
}

// ACL tokens and policies (only linked when the agent has ACLs enabled):
// list, create and delete through Consul's endpoints — `GET /v1/acl/tokens`,
// `PUT /v1/acl/token`, `DELETE /v1/acl/token/<AccessorID>`, and the same for
// `/v1/acl/policies` / `/v1/acl/policy`.

import { h, fill, plural, table } from "../dom.js";
import { encodeSegment, describeError } from "../api.js";

function disabled(ctx, title) {
  ctx.main.append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, title)),
    h("p", { class: "empty" }, "ACLs are not enabled on this agent."),
  );
  ctx.loaded();
}

function subnav(ctx, current) {
  const link = (id, label, url) =>
    h("a", { href: url, "aria-current": current === id ? "page" : null }, label);
  return h(
    "nav",
    { class: "tabs", "aria-label": "ACL" },
    link("tokens", "Tokens", ctx.href.tokens(ctx.dc)),
    link("policies", "Policies", ctx.href.policies(ctx.dc)),
  );
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function deleteButton(label, onClick) {
  return h("button", { type: "button", class: "link danger", data: { action: "delete" }, "aria-label": label, on: { click: onClick } }, "Delete");
}

// ---------------------------------------------------------------- tokens

export function renderTokens(ctx) {
  ctx.title("Tokens - ACL");
  if (!ctx.config.ACLsEnabled) return disabled(ctx, "ACL tokens");
  const count = h("p", { id: "count", class: "count-line", role: "status" });
  const listBox = h("div");
  const message = h("div", { id: "token-message", class: "message", role: "status" });
  const description = h("input", { id: "token-description", type: "text", autocomplete: "off" });
  const local = h("input", { id: "token-local", type: "checkbox" });
  const policyBox = h("fieldset", { class: "policy-picks" }, h("legend", null, "Policies"));
  const create = h("button", { id: "token-create", type: "submit", class: "primary" }, "Create token");
  const form = h(
    "form",
    { class: "acl-form", novalidate: true },
    h("h2", null, "New token"),
    h("div", { class: "field" }, h("label", { for: "token-description" }, "Description"), description),
    policyBox,
    h("div", { class: "field inline" }, local, h("label", { for: "token-local" }, "Local to this datacenter")),
    h("div", { class: "actions" }, create),
    message,
  );
  ctx.main.append(
    h("div", { class: "page-head" }, subnav(ctx, "tokens"), h("h1", { tabindex: "-1" }, "ACL tokens"), h("div", { class: "toolbar" }, count)),
    listBox,
    form,
  );

  const tokens = ctx.watch("/v1/acl/tokens", {}, "list ACL tokens", (data) => {
    const list = Array.isArray(data) ? data : [];
    count.textContent = plural(list.length, "token");
    fill(
      listBox,
      list.length === 0
        ? h("p", { class: "empty" }, "No tokens.")
        : table(
            "ACL tokens",
            ["Accessor ID", "Description", "Policies", "Scope", "Created", "Actions"],
            list.map((t) =>
              h(
                "tr",
                { data: { accessor: t.AccessorID } },
                h("th", { scope: "row" }, h("code", null, t.AccessorID)),
                h("td", null, t.Description || ""),
                h("td", null, (t.Policies || []).map((p) => p.Name || p.ID).join(", ")),
                h("td", null, t.Local ? "local" : "global"),
                h("td", null, when(t.CreateTime)),
                h("td", null, deleteButton(`Delete token ${t.AccessorID}`, () => remove(t))),
              ),
            ),
          ),
    );
    ctx.loaded();
  });

  let picks = [];
  ctx.watch("/v1/acl/policies", {}, "list ACL policies", (data) => {
    const chosen = new Set(picks.filter((p) => p.box.checked).map((p) => p.id));
    picks = (Array.isArray(data) ? data : []).map((p) => {
      const id = `token-policy-${p.ID}`;
      const box = h("input", { type: "checkbox", id, value: p.ID, checked: chosen.has(p.ID) });
      return { id: p.ID, box, el: h("div", { class: "field inline" }, box, h("label", { for: id }, p.Name)) };
    });
    fill(policyBox, h("legend", null, "Policies"), picks.length ? picks.map((p) => p.el) : h("p", { class: "muted" }, "No policies."));
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    create.disabled = true;
    message.textContent = "Creating…";
    try {
      const res = await ctx.request("/v1/acl/token", {
        method: "PUT",
        json: true,
        body: {
          Description: description.value,
          Policies: picks.filter((p) => p.box.checked).map((p) => ({ ID: p.id })),
          Local: local.checked,
        },
        action: "create ACL tokens",
      });
      const t = res.data || {};
      message.textContent = `Created token ${t.AccessorID || ""}. Its secret ID: ${t.SecretID || "(not shown)"}`;
      description.value = "";
      tokens.restart();
    } catch (err) {
      message.textContent = describeError(err);
    } finally {
      create.disabled = false;
    }
  });

  async function remove(t) {
    if (!confirm(`Delete the token ${t.AccessorID}${t.Description ? ` (${t.Description})` : ""}?`)) return;
    try {
      await ctx.request(`/v1/acl/token/${encodeSegment(t.AccessorID)}`, { method: "DELETE", action: "delete ACL tokens" });
      message.textContent = `Deleted token ${t.AccessorID}.`;
      tokens.restart();
    } catch (err) {
      ctx.fail(err);
    }
  }
}

// ---------------------------------------------------------------- policies

export function renderPolicies(ctx) {
  ctx.title("Policies - ACL");
  if (!ctx.config.ACLsEnabled) return disabled(ctx, "ACL policies");
  const count = h("p", { id: "count", class: "count-line", role: "status" });
  const listBox = h("div");
  const message = h("div", { id: "policy-message", class: "message", role: "status" });
  const name = h("input", { id: "policy-name", type: "text", autocomplete: "off", spellcheck: "false" });
  const description = h("input", { id: "policy-description", type: "text", autocomplete: "off" });
  const rules = h("textarea", { id: "policy-rules", rows: "8", spellcheck: "false", placeholder: 'service_prefix "" { policy = "read" }' });
  const create = h("button", { id: "policy-create", type: "submit", class: "primary" }, "Create policy");
  const form = h(
    "form",
    { class: "acl-form", novalidate: true },
    h("h2", null, "New policy"),
    h("div", { class: "field" }, h("label", { for: "policy-name" }, "Name"), name),
    h("div", { class: "field" }, h("label", { for: "policy-description" }, "Description"), description),
    h("div", { class: "field" }, h("label", { for: "policy-rules" }, "Rules (HCL or JSON)"), rules),
    h("div", { class: "actions" }, create),
    message,
  );
  ctx.main.append(
    h("div", { class: "page-head" }, subnav(ctx, "policies"), h("h1", { tabindex: "-1" }, "ACL policies"), h("div", { class: "toolbar" }, count)),
    listBox,
    form,
  );

  const policies = ctx.watch("/v1/acl/policies", {}, "list ACL policies", (data) => {
    const list = Array.isArray(data) ? data : [];
    count.textContent = plural(list.length, "policy", "policies");
    fill(
      listBox,
      list.length === 0
        ? h("p", { class: "empty" }, "No policies.")
        : table(
            "ACL policies",
            ["Name", "Description", "Datacenters", "ID", "Actions"],
            list.map((p) =>
              h(
                "tr",
                { data: { policy: p.ID } },
                h("th", { scope: "row" }, p.Name),
                h("td", null, p.Description || ""),
                h("td", null, (p.Datacenters || []).join(", ") || "all"),
                h("td", null, h("code", null, p.ID)),
                h("td", null, deleteButton(`Delete policy ${p.Name}`, () => remove(p))),
              ),
            ),
          ),
    );
    ctx.loaded();
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    create.disabled = true;
    message.textContent = "Creating…";
    try {
      const res = await ctx.request("/v1/acl/policy", {
        method: "PUT",
        json: true,
        body: { Name: name.value, Description: description.value, Rules: rules.value },
        action: "create ACL policies",
      });
      message.textContent = `Created policy ${(res.data && res.data.Name) || name.value}.`;
      name.value = "";
      description.value = "";
      rules.value = "";
      policies.restart();
    } catch (err) {
      // The form keeps what was typed; the server says what is wrong.
      message.textContent = describeError(err);
    } finally {
      create.disabled = false;
    }
  });

  async function remove(p) {
    if (!confirm(`Delete the policy "${p.Name}"?`)) return;
    try {
      await ctx.request(`/v1/acl/policy/${encodeSegment(p.ID)}`, { method: "DELETE", action: "delete ACL policies" });
      message.textContent = `Deleted policy ${p.Name}.`;
      policies.restart();
    } catch (err) {
      ctx.fail(err);
    }
  }
}

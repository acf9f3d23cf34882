// Log in: the ACL token is kept in localStorage["cairn:token"] and sent as
// X-Consul-Token on every request. A token is checked with
// `GET /v1/acl/token/self` before it is kept; an agent without ACLs (401
// "ACL support disabled", or no ACL endpoints) keeps it without a check.

import { h } from "../dom.js";
import { ApiError, describeError, getToken, setToken, request } from "../api.js";

export function render(ctx) {
  ctx.title("Log in");
  const input = h("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false", value: "" });
  const save = h("button", { id: "login-save", type: "submit", class: "primary" }, "Log in");
  const logout = h("button", { id: "logout", type: "button" }, "Log out");
  const message = h("div", { id: "login-message", class: "message", role: "status" });
  const say = (text, kind = "info") => {
    message.textContent = text;
    message.dataset.kind = kind;
  };
  const form = h(
    "form",
    { class: "login", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "token" }, "ACL token"), input),
    h("p", { class: "muted hint" }, "The token's secret ID. It is kept in this browser and sent with every request."),
    h("div", { class: "actions" }, save, logout),
    message,
  );
  ctx.main.append(h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Log in")), form);
  say(getToken() ? "A token is stored in this browser." : "No token is stored; requests are anonymous.");
  ctx.loaded();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return say("Enter a token.", "error");
    save.disabled = true;
    say("Checking the token…");
    try {
      const res = await request("/v1/acl/token/self", {
        dc: ctx.dc,
        token,
        action: "read its own token",
      });
      setToken(token);
      input.value = "";
      const t = res.data || {};
      say(`Logged in${t.Description ? ` as "${t.Description}"` : ""}${t.AccessorID ? ` (accessor ${t.AccessorID})` : ""}.`, "ok");
      ctx.tokenChanged();
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        say(`This token was not accepted: ${err.body || "ACL not found"}`, "error");
      } else if (err instanceof ApiError && (err.status === 401 || err.status === 404 || err.status === 405)) {
        setToken(token);
        input.value = "";
        say("Token saved. This agent does not check ACL tokens.", "ok");
        ctx.tokenChanged();
      } else {
        say(describeError(err), "error");
      }
    } finally {
      save.disabled = false;
    }
  });

  logout.addEventListener("click", () => {
    setToken("");
    say("Logged out. Requests are anonymous.", "ok");
    ctx.tokenChanged();
  });
}

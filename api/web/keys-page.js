// API keys (/keys): create one (shown once, with a copy button), list them, revoke one.

import { isAbort, request } from "./api.js";
import { alertBox, announce, h, heading, replace, showError } from "./dom.js";
import { localTime } from "./format.js";
import { confirmAction } from "./confirm.js";

const COLUMNS = ["Name", "Key", "Created", "Last used", "Actions"];

export async function render(ctx) {
  const { signal } = ctx;
  const name = h("input", {
    id: "key-name",
    name: "name",
    type: "text",
    maxlength: "100",
    required: true,
    autocomplete: "off",
    "aria-describedby": "key-name-hint",
  });
  const formError = alertBox("form-error");
  // The button sits in the input's row; the hint goes under both, so it does not push the button down.
  const form = h(
    "form",
    { id: "key-form", class: "key-form", novalidate: true },
    h("label", { for: "key-name" }, "Name"),
    h(
      "div",
      { class: "input-row" },
      name,
      h("button", { type: "submit", class: "button-primary" }, "Create key"),
    ),
    h("p", { id: "key-name-hint", class: "hint" }, "What the key is for, e.g. “laptop” or “CI”."),
  );
  const created = h("div", { class: "new-key-slot" });
  const listError = alertBox("keys-error");
  const tbody = h("tbody");
  const table = h(
    "table",
    { id: "keys-table", class: "data-table stack-table" },
    h("caption", { class: "visually-hidden" }, "Your API keys"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        COLUMNS.map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    tbody,
  );
  replace(
    ctx.main,
    heading("API keys"),
    h(
      "p",
      { class: "lead" },
      "Programs use an API key to call the Verbatim API for you: send it as ",
      h("code", { class: "nowrap" }, "Authorization: Bearer <key>"),
      ".",
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "new-key-title" },
      h("h2", { id: "new-key-title" }, "New key"),
      form,
      formError,
      created,
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "keys-title" },
      h("h2", { id: "keys-title" }, "Your keys"),
      listError,
      h("div", { class: "table-wrap" }, table),
    ),
  );

  async function load() {
    const keys = await request("GET", "/v1/api-keys", { signal });
    drawKeys(tbody, keys, revoke);
  }

  async function revoke(key) {
    const label = key.name || `vbt_${key.prefix}`;
    const yes = await confirmAction({
      title: "Revoke this key?",
      message: `Programs using “${label}” stop working at once. This cannot be undone.`,
      yes: "Revoke",
      no: "Keep it",
      danger: true,
    });
    if (!yes) return;
    try {
      await request("DELETE", `/v1/api-keys/${encodeURIComponent(key.id)}`, { signal });
      announce(`Revoked ${label}.`);
      showError(listError, null);
      await load();
      if (!document.activeElement || document.activeElement === document.body) {
        (tbody.querySelector("button") || name).focus();
      }
    } catch (error) {
      if (!isAbort(error)) showError(listError, error);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(formError, null);
    if (!name.value.trim()) {
      showError(formError, { detail: "Give the key a name." });
      name.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const key = await request("POST", "/v1/api-keys", { json: { name: name.value.trim() }, signal });
      name.value = "";
      replace(created, newKey(key));
      announce("Key created. Copy it now: it is shown only once.");
      created.querySelector("#copy-key").focus();
      await load();
    } catch (error) {
      if (!isAbort(error)) showError(formError, error);
    } finally {
      button.disabled = false;
    }
  });

  await load();
}

/** The new key, in a <code>, with a copy button: the only time the key is shown. */
function newKey(key) {
  const code = h("code", { id: "new-key-value" }, key.key);
  const copied = h("span", { class: "small", role: "status" });
  const copy = h("button", { id: "copy-key", type: "button", class: "button-primary" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(key.key);
      copied.textContent = "Copied.";
    } catch {
      // No clipboard access (an insecure origin, or refused): select it for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copied.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
    }
  });
  return h(
    "div",
    { id: "new-key", class: "new-key" },
    h("p", {}, h("strong", {}, `Your new key “${key.name}”. `), "Copy it now: it is not shown again."),
    h("div", { class: "key-box" }, code, copy),
    copied,
  );
}

function drawKeys(tbody, keys, revoke) {
  if (!keys.length) {
    replace(
      tbody,
      h("tr", { class: "empty-row" }, h("td", { colspan: String(COLUMNS.length) }, "No keys yet.")),
    );
    return;
  }
  replace(
    tbody,
    keys.map((key) =>
      h(
        "tr",
        { "data-key-id": key.id },
        h("td", { "data-label": "Name" }, key.name || "—"),
        h("td", { "data-label": "Key" }, h("code", {}, `vbt_${key.prefix}_…`)),
        h("td", { "data-label": "Created" }, localTime(key.created_at)),
        h("td", { "data-label": "Last used" }, key.last_used_at ? localTime(key.last_used_at) : "Never"),
        h(
          "td",
          { "data-label": "Actions" },
          h(
            "button",
            {
              type: "button",
              class: "button-danger-quiet",
              "data-action": "revoke",
              "aria-label": `Revoke ${key.name || key.prefix}`,
              on: { click: () => revoke(key) },
            },
            "Revoke",
          ),
        ),
      ),
    ),
  );
}

// Users (/admin/users, admins): every account with its tier and whether it may sign in.

import { isAbort, request } from "./api.js";
import { alertBox, announce, h, heading, replace, showError } from "./dom.js";
import { capitalize, localTime } from "./format.js";

const PAGE_SIZE = 50;
const TIERS = ["free", "pro", "enterprise"]; // core/enums.py Tier
const COLUMNS = ["Email", "Tier", "Active", "Role", "Created"];

export async function render(ctx) {
  const { signal } = ctx;
  const error = alertBox("users-error");
  const tbody = h("tbody");
  const prev = h("button", { id: "users-prev", type: "button", class: "button-secondary" }, "Previous");
  const next = h("button", { id: "users-next", type: "button", class: "button-secondary" }, "Next");
  const range = h("span", { class: "pager-range", "aria-live": "polite" });
  replace(
    ctx.main,
    h(
      "div",
      { class: "page-head" },
      heading("Users"),
      h("a", { href: "/dashboard/", class: "button-link" }, "Ops dashboard"),
    ),
    h(
      "p",
      { class: "lead" },
      "Changes are saved as you make them. A disabled user’s tokens and API keys stop working.",
    ),
    error,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "users-table", class: "data-table stack-table" },
        h("caption", { class: "visually-hidden" }, "Users, newest first"),
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
      ),
    ),
    h("div", { class: "pager" }, prev, range, next),
  );

  let offset = 0;
  let total = 0;
  async function load() {
    const page = await request("GET", "/v1/admin/users", { query: { limit: PAGE_SIZE, offset }, signal });
    total = page.total;
    replace(
      tbody,
      page.items.map((user) => userRow(user, ctx.user, save)),
    );
    const text = page.items.length ? `${offset + 1}–${offset + page.items.length} of ${total}` : "No users";
    if (range.textContent !== text) range.textContent = text;
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE_SIZE >= total;
  }

  async function save(user, change, undo) {
    try {
      const updated = await request("PATCH", `/v1/admin/users/${encodeURIComponent(user.id)}`, {
        json: change,
        signal,
      });
      Object.assign(user, updated);
      showError(error, null);
      announce(`Saved ${user.email}.`);
    } catch (failure) {
      if (isAbort(failure)) return;
      undo();
      showError(error, failure);
    }
  }

  const page = (step) => async () => {
    offset = Math.max(0, offset + step);
    try {
      await load();
    } catch (failure) {
      if (!isAbort(failure)) showError(error, failure);
    }
  };
  prev.addEventListener("click", page(-PAGE_SIZE));
  next.addEventListener("click", page(PAGE_SIZE));
  await load();
}

function userRow(user, me, save) {
  const tier = h(
    "select",
    { "aria-label": `Tier of ${user.email}`, name: "tier", "data-field": "tier" },
    TIERS.map((t) => h("option", { value: t }, capitalize(t))),
  );
  tier.value = user.tier;
  tier.addEventListener("change", () => {
    const before = user.tier;
    save(user, { tier: tier.value }, () => {
      tier.value = before;
    });
  });
  const self = user.id === me.id;
  const active = h("input", {
    type: "checkbox",
    name: "is_active",
    "data-field": "is_active",
    "aria-label": `${user.email} is active`,
    checked: user.is_active,
    // The API refuses an admin disabling their own account: not offered.
    disabled: self,
    title: self ? "You cannot disable your own account" : null,
  });
  active.addEventListener("change", () => {
    save(user, { is_active: active.checked }, () => {
      active.checked = user.is_active;
    });
  });
  return h(
    "tr",
    { "data-user-id": user.id },
    h(
      "td",
      { "data-label": "Email" },
      user.email,
      self ? h("span", { class: "muted small" }, " (you)") : null,
    ),
    h("td", { "data-label": "Tier" }, tier),
    h("td", { "data-label": "Active" }, active),
    h("td", { "data-label": "Role" }, user.is_admin ? "Admin" : "User"),
    h("td", { "data-label": "Created" }, localTime(user.created_at)),
  );
}

// The account (/account): who you are, your tier and usage, and a password change.

import { request, signOut } from "./api.js";
import { alertBox, field, h, heading, replace, showError } from "./dom.js";
import { capitalize, localTime } from "./format.js";
import { usagePanel } from "./usage.js";

const MIN_PASSWORD_LENGTH = 10; // api/schemas.py MIN_PASSWORD_LENGTH

export async function render(ctx) {
  const profile = h(
    "dl",
    { class: "facts" },
    fact("Email", ctx.user.email),
    fact("Tier", capitalize(ctx.user.tier)),
  );
  const usage = usagePanel();
  replace(
    ctx.main,
    heading("Account"),
    h(
      "div",
      { class: "account-layout" },
      h(
        "section",
        { class: "panel", "aria-labelledby": "profile-title" },
        h("h2", { id: "profile-title" }, "Profile"),
        profile,
      ),
      usage.panel,
      passwordPanel(ctx),
    ),
  );
  const [me] = await Promise.all([
    request("GET", "/v1/auth/me", { signal: ctx.signal }),
    usage.load(ctx.signal),
  ]);
  replace(
    profile,
    fact("Email", me.email),
    fact("Tier", capitalize(me.tier)),
    fact("Member since", localTime(me.created_at)),
  );
}

function fact(term, value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, value));
}

function passwordPanel(ctx) {
  const current = h("input", {
    id: "current-password",
    name: "current_password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const fresh = h("input", {
    id: "new-password",
    name: "new_password",
    type: "password",
    autocomplete: "new-password",
    minlength: String(MIN_PASSWORD_LENGTH),
    required: true,
  });
  const error = alertBox("form-error");
  // For password managers: which account the new password belongs to.
  const username = h("input", {
    type: "email",
    name: "username",
    autocomplete: "username",
    value: ctx.user.email,
    hidden: true,
    readonly: true,
  });
  const form = h(
    "form",
    { id: "password-form", class: "stack", novalidate: true },
    username,
    field("Current password", current),
    field(
      "New password",
      fresh,
      `At least ${MIN_PASSWORD_LENGTH} characters. You will be signed out everywhere and sign in again.`,
    ),
    error,
    h("button", { type: "submit", class: "button-primary" }, "Change password"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    if (!current.value) {
      showError(error, { detail: "Enter your current password." });
      current.focus();
      return;
    }
    if (fresh.value.length < MIN_PASSWORD_LENGTH) {
      showError(error, { detail: `The new password needs at least ${MIN_PASSWORD_LENGTH} characters.` });
      fresh.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await request("POST", "/v1/auth/password", {
        json: { current_password: current.value, new_password: fresh.value },
        quiet401: true,
      });
      // Every session ended with the old password, this one too: its cookie is only cleared.
      await signOut().catch(() => {});
      ctx.signedOut("Your password was changed. Sign in with the new password.");
    } catch (failure) {
      button.disabled = false;
      showError(error, failure);
    }
  });
  return h(
    "section",
    { class: "panel", "aria-labelledby": "password-title" },
    h("h2", { id: "password-title" }, "Change password"),
    form,
  );
}

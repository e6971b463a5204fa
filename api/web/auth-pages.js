// Sign in (/login) and register (/register).

import { request, signIn } from "./api.js";
import { alertBox, field, h, heading, replace, showError } from "./dom.js";

const MIN_PASSWORD_LENGTH = 10; // api/schemas.py MIN_PASSWORD_LENGTH

function input(id, type, autocomplete, extra = {}) {
  return h("input", { id, name: id, type, autocomplete, required: true, ...extra });
}

/** A note from the page before (signed out, session ended, password changed). */
function flashNote(ctx) {
  return ctx.flash ? h("p", { class: "notice", role: "status", id: "form-message" }, ctx.flash) : null;
}

function submitting(form, busy) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
}

export function renderSignIn(ctx) {
  const error = alertBox("form-error");
  const email = input("email", "email", "username", { inputmode: "email" });
  const password = input("password", "password", "current-password");
  const form = h(
    "form",
    { id: "sign-in-form", class: "stack", novalidate: true },
    field("Email", email),
    field("Password", password),
    error,
    h("button", { type: "submit", class: "button-primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    if (!email.value.trim() || !password.value) {
      showError(error, { detail: "Enter your email and password." });
      (email.value.trim() ? password : email).focus();
      return;
    }
    submitting(form, true);
    try {
      const user = await signIn(email.value.trim(), password.value);
      ctx.signedIn(user, ctx.query.get("next"));
    } catch (failure) {
      submitting(form, false);
      showError(error, failure);
      password.select();
    }
  });
  replace(
    ctx.main,
    h(
      "div",
      { class: "auth-card" },
      heading("Sign in"),
      flashNote(ctx),
      form,
      h("p", {}, "No account yet? ", h("a", { href: "/register" }, "Create one"), "."),
    ),
  );
}

export function renderRegister(ctx) {
  const error = alertBox("form-error");
  const email = input("email", "email", "username", { inputmode: "email" });
  const password = input("password", "password", "new-password", { minlength: MIN_PASSWORD_LENGTH });
  const confirm = input("password-confirm", "password", "new-password", { minlength: MIN_PASSWORD_LENGTH });
  const form = h(
    "form",
    { id: "register-form", class: "stack", novalidate: true },
    field("Email", email),
    field("Password", password, `At least ${MIN_PASSWORD_LENGTH} characters.`),
    field("Repeat the password", confirm),
    error,
    h("button", { type: "submit", class: "button-primary" }, "Create account"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = registerProblem(email.value.trim(), password.value, confirm.value);
    showError(error, problem && { detail: problem.text });
    if (problem) {
      problem.focus({ email, password, confirm }).focus();
      return;
    }
    submitting(form, true);
    try {
      await request("POST", "/v1/auth/register", {
        json: { email: email.value.trim(), password: password.value },
      });
      const user = await signIn(email.value.trim(), password.value);
      ctx.signedIn(user, "/");
    } catch (failure) {
      submitting(form, false);
      showError(error, failure);
    }
  });
  replace(
    ctx.main,
    h(
      "div",
      { class: "auth-card" },
      heading("Create an account"),
      form,
      h("p", {}, "Have an account? ", h("a", { href: "/login" }, "Sign in"), "."),
    ),
  );
}

function registerProblem(email, password, confirm) {
  if (!email) return { text: "Enter your email.", focus: (f) => f.email };
  if (password.length < MIN_PASSWORD_LENGTH) {
    return {
      text: `The password needs at least ${MIN_PASSWORD_LENGTH} characters.`,
      focus: (f) => f.password,
    };
  }
  if (password !== confirm) return { text: "The two passwords differ.", focus: (f) => f.confirm };
  return null;
}

// The Verbatim web app: start-up, the session, and which page draws for which path.

import { ApiError, forgetSession, isAbort, loadSession, onUnauthorized, signOut } from "./api.js";
import { dismissConfirm } from "./confirm.js";
import { h, errorText, replace } from "./dom.js";
import { renderHeader } from "./layout.js";
import { match, navigate, startRouter } from "./router.js";
import * as accountPage from "./account-page.js";
import * as authPages from "./auth-pages.js";
import * as jobPage from "./job-page.js";
import * as jobsPage from "./jobs-page.js";
import * as keysPage from "./keys-page.js";
import * as uploadPage from "./upload-page.js";
import * as usersPage from "./users-page.js";

// access: "user" (signed in), "guest" (signed out only), "admin".
const PAGES = {
  upload: { title: "Upload", access: "user", render: uploadPage.render },
  login: { title: "Sign in", access: "guest", render: authPages.renderSignIn },
  register: { title: "Create an account", access: "guest", render: authPages.renderRegister },
  jobs: { title: "Jobs", access: "user", render: jobsPage.render },
  job: { title: "Job", access: "user", render: jobPage.render },
  keys: { title: "API keys", access: "user", render: keysPage.render },
  account: { title: "Account", access: "user", render: accountPage.render },
  users: { title: "Users", access: "admin", render: usersPage.render },
};

// The sliding session is renewed this often while the page is open.
const SESSION_REFRESH_MS = 10 * 60 * 1000;

let user = null;
let page = null; // the AbortController of the page on screen: aborted when it is left
let flash = null; // a message for the next page drawn ("You have signed out.")

function draw({ initial }) {
  const url = new URL(location.href);
  const found = match(url.pathname);
  const spec = found && PAGES[found.name];
  if (spec && spec.access !== "guest" && !user) {
    const back =
      url.pathname === "/" && !url.search ? "" : `?next=${encodeURIComponent(url.pathname + url.search)}`;
    history.replaceState(null, "", `/login${back}`);
    return draw({ initial });
  }
  if (spec && spec.access === "guest" && user) {
    history.replaceState(null, "", "/");
    return draw({ initial });
  }
  page?.abort();
  dismissConfirm(); // a question about the page left (Back while it was open) goes with it
  page = new AbortController();
  renderHeader(user, found?.name, signOutClicked);
  const main = document.getElementById("main");
  replace(main);
  const ctx = context(main, found, url, page.signal);
  if (!spec) renderNotFound(ctx);
  else if (spec.access === "admin" && !user.is_admin) renderForbidden(ctx);
  else {
    ctx.setTitle(spec.title);
    try {
      Promise.resolve(spec.render(ctx)).catch((error) => pageFailed(ctx, error));
    } catch (error) {
      pageFailed(ctx, error);
    }
  }
  if (!initial) {
    window.scrollTo(0, 0);
    // Where a screen reader or the keyboard carries on from: the new page's heading.
    main.querySelector("h1")?.focus();
  }
}

function context(main, found, url, signal) {
  const message = flash;
  flash = null;
  return {
    main,
    signal,
    user,
    params: found?.params || [],
    query: url.searchParams,
    flash: message,
    setTitle(text) {
      if (!signal.aborted) document.title = `${text} · Verbatim`;
    },
    navigate(path, options = {}) {
      flash = options.flash || null;
      navigate(path, options);
    },
    signedIn(signedInUser, next) {
      user = signedInUser;
      navigate(safeNext(next), { replace: true });
    },
    signedOut(message) {
      endSession(message, false);
    },
  };
}

/** Only a path of this app: never another site (`//evil.example`) from a crafted link. */
function safeNext(next) {
  return next &&
    next.startsWith("/") &&
    !next.startsWith("//") &&
    match(new URL(next, location.origin).pathname)
    ? next
    : "/";
}

function pageFailed(ctx, error) {
  if (isAbort(error) || ctx.signal.aborted) return;
  if (error instanceof ApiError && error.status === 401) return; // endSession draws the sign-in page
  ctx.main.append(h("p", { class: "form-error", role: "alert" }, errorText(error)));
}

function renderNotFound(ctx) {
  ctx.setTitle("Not found");
  replace(
    ctx.main,
    h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, "There is no page at this address. ", h("a", { href: "/" }, "Go to the upload page"), "."),
  );
}

function renderForbidden(ctx) {
  ctx.setTitle("Not allowed");
  replace(
    ctx.main,
    h("h1", { tabindex: "-1" }, "Not allowed"),
    h("p", { role: "alert" }, "This page is for administrators."),
  );
}

async function signOutClicked() {
  try {
    await signOut();
  } catch {
    // Signed out here either way: the cookie may already have expired.
  }
  endSession("You have signed out.", false);
}

/** Back to the sign-in page with `message`; `comeBack`: sign-in returns to this page. */
function endSession(message, comeBack) {
  user = null;
  forgetSession();
  flash = message;
  const here = location.pathname + location.search;
  const onSignIn = location.pathname === "/login" || location.pathname === "/register";
  navigate(comeBack && !onSignIn ? `/login?next=${encodeURIComponent(here)}` : "/login", { replace: true });
}

function sessionExpired() {
  if (user) endSession("Your session has ended. Please sign in again.", true);
}

async function refreshSession() {
  if (!user) return;
  try {
    const renewed = await loadSession();
    if (!renewed) sessionExpired();
    else user = renewed;
  } catch {
    // Offline for a moment: the next refresh, or the next request, tells.
  }
}

async function boot() {
  onUnauthorized(sessionExpired);
  document.querySelector(".skip-link")?.addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  try {
    user = await loadSession();
  } catch (error) {
    const main = document.getElementById("main");
    replace(
      main,
      h("h1", { tabindex: "-1" }, "Verbatim is unavailable"),
      h("p", { role: "alert" }, errorText(error)),
    );
    return;
  }
  setInterval(refreshSession, SESSION_REFRESH_MS);
  startRouter(draw);
}

boot();

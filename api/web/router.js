// History routing: the server answers index.html for each of these paths; the page is drawn here.

const ROUTES = [
  ["upload", /^\/$/],
  ["login", /^\/login$/],
  ["register", /^\/register$/],
  ["jobs", /^\/jobs$/],
  ["job", /^\/jobs\/([^/]+)$/],
  ["keys", /^\/keys$/],
  ["account", /^\/account$/],
  ["users", /^\/admin\/users$/],
];

let onRoute = null;

/** The route of a path: { name, params } or null. */
export function match(pathname) {
  for (const [name, pattern] of ROUTES) {
    const found = pattern.exec(pathname);
    if (found) return { name, params: found.slice(1).map(decodeURIComponent) };
  }
  return null;
}

/** Starts routing: `handler({ initial })` draws the page of `location` now and on each change. */
export function startRouter(handler) {
  onRoute = handler;
  window.addEventListener("popstate", () => onRoute({ initial: false }));
  document.addEventListener("click", followLink);
  onRoute({ initial: true });
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  onRoute({ initial: false });
}

/** Replaces the address (a filter or page changed) without drawing the page again. */
export function setAddress(path) {
  if (path !== location.pathname + location.search) history.replaceState(null, "", path);
}

// Links to the app's own pages change the page in place; every other link (the dashboard, a
// download, another site, a new tab asked for) is left to the browser.
function followLink(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest?.("a[href]");
  if (!link || link.hasAttribute("download") || (link.target && link.target !== "_self")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  const samePage = url.pathname === location.pathname && url.search === location.search;
  if (samePage && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

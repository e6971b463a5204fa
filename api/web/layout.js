// The header: main navigation, the signed-in email and Sign out.

import { h, replace } from "./dom.js";

const LINKS = [
  ["/", "Upload", ["upload"]],
  ["/jobs", "Jobs", ["jobs", "job"]],
  ["/keys", "API keys", ["keys"]],
  ["/account", "Account", ["account"]],
];
const ADMIN_LINKS = [["/admin/users", "Users", ["users"]]];

/** Draws the header's navigation for `user` (null: signed out), marking the page `route` is on. */
export function renderHeader(user, route, onSignOut) {
  const area = document.getElementById("header-nav");
  if (!user) {
    replace(area);
    return;
  }
  const links = user.is_admin ? [...LINKS, ...ADMIN_LINKS] : LINKS;
  const items = links.map(([href, label, routes]) =>
    h("li", {}, h("a", { href, "aria-current": routes.includes(route) ? "page" : null }, label)),
  );
  if (user.is_admin) {
    // The ops dashboard is another application: an ordinary link, a full page load.
    items.push(h("li", {}, h("a", { href: "/dashboard/" }, "Dashboard")));
  }
  replace(
    area,
    h("nav", { "aria-label": "Main", class: "main-nav" }, h("ul", {}, items)),
    h(
      "div",
      { class: "account-box" },
      h("span", { class: "user-email", title: "Signed in as" }, user.email),
      h(
        "button",
        { type: "button", id: "sign-out", class: "button-quiet", on: { click: onSignOut } },
        "Sign out",
      ),
    ),
  );
}

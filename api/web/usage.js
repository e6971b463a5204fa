// The usage panel (#usage): tier, minutes used and left this month, active jobs.

import { request } from "./api.js";
import { h, replace } from "./dom.js";
import { capitalize, minutes } from "./format.js";

/** An empty #usage section; `load(signal)` fills it (and is called again after each new job). */
export function usagePanel() {
  const panel = h("section", { id: "usage", class: "panel usage", "aria-labelledby": "usage-title" });
  const title = h("h2", { id: "usage-title" }, "Usage this month");
  replace(panel, title, h("p", { class: "muted" }, "Loading…"));
  async function load(signal) {
    const usage = await request("GET", "/v1/usage", { signal });
    replace(panel, h("h2", { id: "usage-title" }, `Usage in ${monthName(usage.month)}`), ...usageBody(usage));
    return usage;
  }
  return { panel, load };
}

function usageBody(usage) {
  const limit = usage.limits.monthly_minutes;
  return [
    h(
      "dl",
      { class: "facts" },
      fact(
        "Tier",
        h("span", { class: "tier", "data-tier": usage.tier }, capitalize(usage.tier)),
        "usage-tier",
      ),
      fact("Minutes used", `${minutes(usage.minutes_used)} of ${minutes(limit)}`, "usage-used"),
      fact("Minutes left", minutes(usage.minutes_left), "usage-left"),
      fact("Active jobs", `${usage.active_jobs} of ${usage.limits.max_active_jobs}`, "usage-active"),
    ),
    h("meter", {
      class: "usage-meter",
      min: "0",
      max: String(limit),
      value: String(Math.min(usage.minutes_used, limit)),
      high: String(limit * 0.9),
      "aria-label": "Minutes used this month",
    }),
    h(
      "p",
      { class: "hint" },
      `Files up to ${usage.limits.max_upload_mb} MB and ${usage.limits.max_duration_minutes} minutes.`,
    ),
  ];
}

function fact(term, value, id) {
  return h("div", {}, h("dt", {}, term), h("dd", { id }, value));
}

function monthName(month) {
  const [year, number] = month.split("-").map(Number);
  if (!year || !number) return month;
  return new Date(Date.UTC(year, number - 1, 1)).toLocaleDateString(undefined, {
    month: "long",
    year: "numeric",
    timeZone: "UTC",
  });
}

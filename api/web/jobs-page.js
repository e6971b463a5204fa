// The jobs list (/jobs): search, status filter, paging, progress; cancel / retry / delete.

import { isAbort, request } from "./api.js";
import { alertBox, announce, debounce, field, h, heading, replace, showError } from "./dom.js";
import { clock, localTime } from "./format.js";
import {
  STATUSES,
  actionButton,
  actionsFor,
  isActive,
  runAction,
  setBadge,
  statusBadge,
  statusLabel,
} from "./job-actions.js";
import { setAddress } from "./router.js";

const PAGE_SIZE = 20;
// While a job on the page is pending or processing, the page is read again this often.
const REFRESH_MS = 5000;
const SEARCH_DELAY_MS = 300;
const COLUMNS = ["File", "Status", "Progress", "Duration", "Created", "Actions"];

export async function render(ctx) {
  const { signal } = ctx;
  const state = {
    q: ctx.query.get("q") || "",
    status: STATUSES.includes(ctx.query.get("status")) ? ctx.query.get("status") : "",
    offset: Math.max(0, Number.parseInt(ctx.query.get("offset") || "0", 10) || 0),
  };
  const search = h("input", {
    id: "jobs-search",
    type: "search",
    name: "q",
    value: state.q,
    autocomplete: "off",
  });
  const status = h(
    "select",
    { id: "jobs-status", name: "status" },
    h("option", { value: "" }, "All"),
    STATUSES.map((s) => h("option", { value: s }, statusLabel(s))),
  );
  status.value = state.status;
  const error = alertBox("jobs-error");
  const tbody = h("tbody");
  const table = h(
    "table",
    { id: "jobs-table", class: "data-table stack-table" },
    h("caption", { class: "visually-hidden" }, "Your jobs, newest first"),
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
  const prev = h("button", { id: "jobs-prev", type: "button", class: "button-secondary" }, "Previous");
  const next = h("button", { id: "jobs-next", type: "button", class: "button-secondary" }, "Next");
  const range = h("span", { id: "jobs-range", class: "pager-range", "aria-live": "polite" });
  replace(
    ctx.main,
    h(
      "div",
      { class: "page-head" },
      heading("Jobs"),
      h("a", { href: "/", class: "button-link" }, "Upload files"),
    ),
    ctx.flash ? h("p", { class: "notice", role: "status" }, ctx.flash) : null,
    h(
      "div",
      { class: "toolbar", role: "search" },
      field("Search", search, "Words in the file name or the transcript."),
      field("Status", status),
    ),
    error,
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, prev, range, next),
  );

  let latest = 0;
  let timer = 0;
  let page = null;
  async function load({ quiet = false } = {}) {
    const ticket = ++latest;
    clearTimeout(timer);
    setAddress(address(state));
    try {
      const found = await request("GET", "/v1/jobs", {
        query: { limit: PAGE_SIZE, offset: state.offset, status: state.status, q: state.q.trim() },
        signal,
      });
      if (ticket !== latest) return;
      if (!found.items.length && state.offset > 0 && found.total > 0) {
        // The page emptied (its last job deleted): show the one before.
        state.offset = Math.max(0, state.offset - PAGE_SIZE);
        return load({ quiet });
      }
      page = found;
      showError(error, null);
      drawRows(tbody, found.items, state, onAction);
      drawPager(found, state, prev, next, range);
      if (!quiet) table.setAttribute("aria-busy", "false");
      if (found.items.some((job) => isActive(job.status))) timer = setTimeout(refresh, REFRESH_MS);
    } catch (failure) {
      if (isAbort(failure) || ticket !== latest) return;
      showError(error, failure);
      timer = setTimeout(refresh, REFRESH_MS * 2);
    }
  }
  function refresh() {
    if (document.visibilityState === "visible") load({ quiet: true });
    else timer = setTimeout(refresh, REFRESH_MS);
  }
  async function onAction(action, job) {
    const row = tbody.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
    const index = row ? Array.from(tbody.rows).indexOf(row) : 0;
    try {
      const result = await runAction(action, job, signal);
      if (!result.done) return;
      announce(result.message);
      await load();
      refocus(tbody, job.id, action, index, ctx.main);
    } catch (failure) {
      if (!isAbort(failure)) showError(error, failure);
    }
  }
  const searchLater = debounce(() => {
    state.q = search.value;
    state.offset = 0;
    load();
  }, SEARCH_DELAY_MS);
  search.addEventListener("input", searchLater);
  status.addEventListener("change", () => {
    state.status = status.value;
    state.offset = 0;
    load();
  });
  prev.addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    load();
  });
  next.addEventListener("click", () => {
    if (page && state.offset + PAGE_SIZE < page.total) {
      state.offset += PAGE_SIZE;
      load();
    }
  });
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    searchLater.cancel();
  });
  table.setAttribute("aria-busy", "true");
  await load();
}

function address(state) {
  const params = new URLSearchParams();
  if (state.q.trim()) params.set("q", state.q.trim());
  if (state.status) params.set("status", state.status);
  if (state.offset) params.set("offset", String(state.offset));
  const text = params.toString();
  return text ? `/jobs?${text}` : "/jobs";
}

// --- rows ---------------------------------------------------------------------------------------

function drawRows(tbody, jobs, state, onAction) {
  const shown = Array.from(tbody.querySelectorAll("tr[data-job-id]"), (tr) => tr.dataset.jobId);
  if (shown.length && shown.join() === jobs.map((j) => j.id).join()) {
    // The same jobs: update them in place, so the focus and the reader's place stay put.
    jobs.forEach((job, i) => updateRow(tbody.rows[i], job, onAction));
    return;
  }
  if (!jobs.length) {
    const filtered = state.q.trim() || state.status;
    const text = filtered
      ? "No jobs match the search or filter."
      : ["No jobs yet. ", h("a", { href: "/" }, "Upload a file"), " to start one."];
    replace(tbody, h("tr", { class: "empty-row" }, h("td", { colspan: String(COLUMNS.length) }, text)));
    return;
  }
  replace(
    tbody,
    jobs.map((job) => jobRow(job, onAction)),
  );
}

function jobRow(job, onAction) {
  const href = `/jobs/${encodeURIComponent(job.id)}`;
  const tr = h(
    "tr",
    { "data-job-id": job.id },
    h(
      "td",
      { "data-label": "File", class: "cell-file" },
      h("a", { href, class: "file-link" }, job.filename),
      job.language ? h("span", { class: "muted small" }, ` ${job.language}`) : null,
    ),
    h("td", { "data-label": "Status", "data-field": "status" }, statusBadge(job.status)),
    h("td", { "data-label": "Progress", "data-field": "progress" }),
    h("td", { "data-label": "Duration", "data-field": "duration" }),
    h(
      "td",
      { "data-label": "Created", "data-field": "created" },
      h("time", { datetime: job.created_at }, localTime(job.created_at)),
    ),
    h("td", { "data-label": "Actions", "data-field": "actions" }),
  );
  updateRow(tr, job, onAction);
  return tr;
}

function updateRow(tr, job, onAction) {
  const cell = (name) => tr.querySelector(`[data-field="${name}"]`);
  setBadge(cell("status").querySelector(".badge"), job.status);
  replace(cell("progress"), progressOf(job));
  cell("duration").textContent = clock(job.audio_duration_seconds);
  const actions = actionsFor(job.status);
  const actionsCell = cell("actions");
  if (actionsCell.dataset.actions !== actions.join()) {
    actionsCell.dataset.actions = actions.join();
    replace(
      actionsCell,
      h(
        "div",
        { class: "row-actions" },
        actions.map((a) => actionButton(a, job, onAction)),
      ),
    );
  }
}

function progressOf(job) {
  const { chunks_total: total, chunks_completed: done, percent } = job.progress;
  const words = total ? `${done}/${total}` : `${Math.round(percent)} %`;
  return h(
    "div",
    { class: "progress-cell" },
    h("progress", { max: "100", value: String(percent), "aria-label": `Progress of ${job.filename}` }),
    h("span", { class: "small muted" }, words),
  );
}

function drawPager(page, state, prev, next, range) {
  const from = page.items.length ? state.offset + 1 : 0;
  const to = state.offset + page.items.length;
  const total = page.total_exact ? String(page.total) : `at least ${page.total}`;
  const text = page.items.length ? `${from}–${to} of ${total}` : "No jobs";
  // A live region: rewritten only when it says something new, not on every refresh.
  if (range.textContent !== text) range.textContent = text;
  prev.disabled = state.offset === 0;
  next.disabled = state.offset + PAGE_SIZE >= page.total;
}

/** After an action redrew the list: focus the same control, else the row now in that place. */
function refocus(tbody, jobId, action, index, main) {
  if (
    document.activeElement &&
    document.activeElement !== document.body &&
    document.activeElement.isConnected
  )
    return;
  const row =
    tbody.querySelector(`tr[data-job-id="${CSS.escape(jobId)}"]`) ||
    tbody.rows[Math.min(index, tbody.rows.length - 1)];
  const target = row?.querySelector(`[data-action="${action}"]`) || row?.querySelector("a, button");
  (target || main.querySelector("h1")).focus();
}

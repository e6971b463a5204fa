// What the jobs list and the job page share: the status badge and the cancel / retry / delete
// actions, each confirmed through dialog#confirm.

import { request } from "./api.js";
import { h } from "./dom.js";
import { confirmAction } from "./confirm.js";

export const STATUSES = ["pending", "processing", "completed", "failed", "canceled"];

const LABELS = {
  pending: "Pending",
  processing: "Processing",
  completed: "Completed",
  failed: "Failed",
  canceled: "Canceled",
};

export function statusLabel(status) {
  return LABELS[status] || status;
}

export function isActive(status) {
  return status === "pending" || status === "processing";
}

export function isFinal(status) {
  return status === "completed" || status === "failed" || status === "canceled";
}

/** The status in words (the colour only repeats it). */
export function statusBadge(status, attrs = {}) {
  return h("span", { class: "badge", "data-status": status, ...attrs }, statusLabel(status));
}

export function setBadge(badge, status) {
  badge.dataset.status = status;
  badge.textContent = statusLabel(status);
}

/** The actions the API allows on a job in `status`: cancel while it runs, retry once it failed. */
export function actionsFor(status) {
  if (isActive(status)) return ["cancel", "delete"];
  if (status === "failed") return ["retry", "delete"];
  return ["delete"];
}

const BUTTONS = {
  cancel: { text: "Cancel", class: "button-secondary" },
  retry: { text: "Retry", class: "button-secondary" },
  delete: { text: "Delete", class: "button-danger-quiet" },
};

export function actionButton(action, job, onClick) {
  const spec = BUTTONS[action];
  return h(
    "button",
    {
      type: "button",
      class: spec.class,
      "data-action": action,
      "aria-label": `${spec.text} ${job.filename}`,
      on: { click: () => onClick(action, job) },
    },
    spec.text,
  );
}

const QUESTIONS = {
  cancel: (job) => ({
    title: "Cancel this job?",
    message: `“${job.filename}” stops: the parts not yet transcribed are dropped.`,
    yes: "Cancel job",
    no: "Keep it running",
    danger: true,
  }),
  retry: (job) => ({
    title: "Retry this job?",
    message: `“${job.filename}” is transcribed again, starting from the parts that failed.`,
    yes: "Retry",
    no: "Not now",
  }),
  delete: (job) => ({
    title: "Delete this job?",
    message: `“${job.filename}”, its audio and its transcripts are deleted. This cannot be undone.`,
    yes: "Delete",
    no: "Keep it",
    danger: true,
  }),
};

/**
 * Asks, then does `action`. Resolves { done: false } when the answer was no; else { done: true,
 * job } with the job as it is now (null once deleted) and a sentence saying what happened.
 */
export async function runAction(action, job, signal) {
  if (!(await confirmAction(QUESTIONS[action](job)))) return { done: false };
  const base = `/v1/jobs/${encodeURIComponent(job.id)}`;
  if (action === "delete") {
    await request("DELETE", base, { signal });
    return { done: true, job: null, message: `Deleted ${job.filename}.` };
  }
  const updated = await request("POST", `${base}/${action}`, { signal });
  const verb = action === "cancel" ? "Canceled" : "Retrying";
  return { done: true, job: updated, message: `${verb} ${job.filename}.` };
}

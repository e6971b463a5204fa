// One job (/jobs/{id}): live status, progress, queue position and ETA from the events stream,
// the transcript growing chunk by chunk, then the final transcript beside the audio player.

import { ApiError, isAbort, request } from "./api.js";
import { alertBox, announce, h, heading, replace, showError } from "./dom.js";
import { briefTime, clock, eta, localTime } from "./format.js";
import {
  actionButton,
  actionsFor,
  isActive,
  isFinal,
  runAction,
  setBadge,
  statusBadge,
} from "./job-actions.js";
import { transcriptSearch } from "./transcript-search.js";
import { transcriptView } from "./transcript.js";

const FORMATS = ["txt", "srt", "vtt", "json"];
const MORE = true; // a secondary fact of the job
// A stream the server refused (not a dropped connection, which EventSource resumes by itself) is
// opened again after this long, once the job has been read again.
const REOPEN_MS = 5000;
// The transcript of a job that just completed may lag its status by a moment.
const TRANSCRIPT_TRIES = 5;
const TRANSCRIPT_RETRY_MS = 1000;

export async function render(ctx) {
  const id = ctx.params[0];
  const base = `/v1/jobs/${encodeURIComponent(id)}`;
  const title = heading("Job");
  replace(
    ctx.main,
    h("a", { href: "/jobs", class: "back-link" }, "← All jobs"),
    title,
    h("p", { class: "muted" }, "Loading…"),
  );
  let job;
  try {
    job = await request("GET", base, { signal: ctx.signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      ctx.setTitle("Job not found");
      title.textContent = "Job not found";
      replace(
        ctx.main,
        title,
        h("p", { role: "alert" }, error.detail),
        h("a", { href: "/jobs" }, "Back to the jobs"),
      );
      return;
    }
    throw error;
  }
  title.classList.add("job-title"); // a file name, often long: smaller than other pages' titles
  const page = jobView(ctx, title, base, job);
  page.start();
}

function jobView(ctx, title, base, initial) {
  const { signal } = ctx;
  let job = initial;
  let stream = null;
  let reopenTimer = 0;
  let chunksSeen = 0;
  let lastCompleted = 0;

  // --- the summary ------------------------------------------------------------------------------
  const badge = statusBadge(job.status, { id: "job-status" });
  const progress = h("progress", { id: "job-progress", max: "100", "aria-labelledby": "job-progress-label" });
  const progressText = h("span", { id: "job-progress-text", class: "small muted" });
  const queuePosition = h("dd", { id: "queue-position" }, "—");
  const etaText = h("dd", { id: "eta" }, "—");
  const queueFacts = h(
    "dl",
    { class: "facts-inline queue-facts" },
    h("div", {}, h("dt", {}, "Queue position"), queuePosition),
    h("div", {}, h("dt", {}, "Time left"), etaText),
  );
  const facts = h("dl", { id: "job-facts", class: "facts-inline job-facts" });
  // Shown on a phone only (the stylesheet hides it elsewhere, where every fact fits on one line).
  const factsToggle = h(
    "button",
    { type: "button", class: "facts-toggle button-quiet", "aria-expanded": "false", "aria-controls": "job-facts" },
    "More details",
  );
  factsToggle.addEventListener("click", () => {
    factsToggle.setAttribute("aria-expanded", String(facts.classList.toggle("expanded")));
  });
  const jobError = alertBox("job-error");
  const actions = h("div", { class: "job-actions" });

  // --- the player and the transcript ------------------------------------------------------------
  const player = h("audio", { id: "player", controls: true, preload: "metadata", src: `${base}/audio` });
  const audioNote = h("p", { class: "hint", id: "audio-note" });
  player.addEventListener("error", () => {
    audioNote.textContent = "The audio cannot be played here (it may not be fetched yet, or no longer kept).";
  });
  const downloads = h("nav", { class: "downloads", "aria-labelledby": "downloads-title" });
  const playerBox = h("div", { class: "player-box" }, player, audioNote);
  const searchInput = h("input", {
    id: "transcript-search",
    type: "search",
    autocomplete: "off",
    "aria-describedby": "search-count",
  });
  const searchPrev = h(
    "button",
    { id: "search-prev", type: "button", class: "button-secondary", "aria-label": "Previous match" },
    "↑",
  );
  const searchNext = h(
    "button",
    { id: "search-next", type: "button", class: "button-secondary", "aria-label": "Next match" },
    "↓",
  );
  const searchCount = h("output", { id: "search-count", class: "small muted", "aria-live": "polite" });
  const searchBox = h(
    "div",
    { class: "search-box", role: "search" },
    h("div", { class: "search-head" }, h("label", { for: "transcript-search" }, "Search the transcript"), searchCount),
    h("div", { class: "search-row" }, searchInput, searchPrev, searchNext),
  );
  let search = null;
  const transcript = transcriptView({ player, playerBox, signal, onChange: () => search?.refresh() });
  search = transcriptSearch({
    root: transcript.root,
    input: searchInput,
    prev: searchPrev,
    next: searchNext,
    count: searchCount,
    seek: transcript.seek,
  });
  const liveNote = h("p", { class: "live-note small", id: "live-note" });

  replace(
    ctx.main,
    h("a", { href: "/jobs", class: "back-link" }, "← All jobs"),
    h("div", { class: "page-head" }, title, actions),
    h(
      "section",
      { class: "panel job-summary", "aria-label": "Status" },
      h(
        "div",
        { class: "status-line" },
        badge,
        h(
          "div",
          { class: "progress-line" },
          h("span", { id: "job-progress-label", class: "visually-hidden" }, "Progress"),
          progress,
          progressText,
        ),
      ),
      h("div", { class: "job-details" }, queueFacts, facts, factsToggle),
      downloads,
      jobError,
    ),
    h(
      "div",
      { class: "job-layout" },
      // Sticks beside the transcript as it scrolls (a phone: the player alone sticks, at the top).
      h("div", { class: "player-col" }, playerBox, searchBox),
      h(
        "section",
        { class: "transcript-col", "aria-labelledby": "transcript-title" },
        h("h2", { id: "transcript-title" }, "Transcript"),
        liveNote,
        transcript.root,
      ),
    ),
  );

  // --- drawing the job --------------------------------------------------------------------------
  function draw() {
    ctx.setTitle(job.filename);
    title.textContent = job.filename;
    setBadge(badge, job.status);
    drawProgress(job.progress.chunks_total, job.progress.chunks_completed);
    drawFacts();
    drawActions();
    drawDownloads();
    // Only a job that waits or runs has a place in the queue.
    queueFacts.hidden = !isActive(job.status);
    if (isActive(job.status)) drawQueue(job.queue_position, job.eta_seconds);
    showError(
      jobError,
      job.status === "failed" ? { detail: `The job failed: ${job.error || "unknown error"}` } : null,
    );
    liveNote.textContent = isActive(job.status) ? "Transcribing: the text appears here part by part." : "";
  }

  function drawProgress(total, completed) {
    lastCompleted = Math.max(completed, chunksSeen);
    if (job.status === "completed") {
      progress.value = 100;
      progressText.textContent = total ? `${total} of ${total} chunks` : "Done";
    } else if (total) {
      progress.value = Math.round((100 * lastCompleted) / total);
      progressText.textContent = `${lastCompleted} of ${total} chunks`;
    } else if (isActive(job.status)) {
      progress.removeAttribute("value"); // still being split into chunks: no measure yet
      progressText.textContent = job.status === "pending" ? "Waiting to start" : "Preparing the audio";
    } else {
      progress.value = 0; // ended before its audio was split into chunks
      progressText.textContent = "Not started";
    }
  }

  function drawQueue(position, seconds) {
    if (position === null || position === undefined) {
      queuePosition.textContent = "—";
    } else if (position === 0) {
      queuePosition.textContent = job.status === "processing" ? "Running now" : "Next";
    } else {
      queuePosition.textContent = `${position} ${position === 1 ? "chunk" : "chunks"} of other jobs ahead`;
    }
    etaText.textContent = eta(seconds);
  }

  function drawFacts() {
    const options = job.options || {};
    const rows = [
      ["Duration", clock(job.audio_duration_seconds)],
      ["Language", job.language || (isActive(job.status) ? "Detecting" : "—")],
      // The rest is folded away on a phone ("More details"), where the transcript comes first.
      ["Model", options.model || "Default", MORE],
      ["Timestamps", options.timestamps === "word" ? "Segments and words" : "Segments", MORE],
      ["Speakers", job.mode === "dialogue" ? "Labelled (dialogue)" : "Not labelled", MORE],
      ["Created", when(job.created_at), MORE],
    ];
    if (job.completed_at) rows.push(["Finished", when(job.completed_at, job.created_at), MORE]);
    replace(
      facts,
      rows.map(([term, value, more]) =>
        h("div", { class: more ? "fact-more" : null }, h("dt", {}, term), h("dd", {}, value)),
      ),
    );
  }

  function drawActions() {
    const wanted = actionsFor(job.status).join();
    if (actions.dataset.actions === wanted) return;
    const hadFocus = actions.contains(document.activeElement);
    actions.dataset.actions = wanted;
    replace(
      actions,
      actionsFor(job.status).map((a) => actionButton(a, job, act)),
    );
    if (hadFocus) actions.querySelector("button")?.focus();
  }

  function drawDownloads() {
    if (job.status !== "completed") {
      replace(downloads);
      return;
    }
    if (downloads.childElementCount) return;
    replace(
      downloads,
      h("h2", { class: "small-heading", id: "downloads-title" }, "Download"),
      h(
        "ul",
        { class: "download-list" },
        FORMATS.map((format) =>
          h(
            "li",
            {},
            h(
              "a",
              {
                href: `${base}/download?format=${format}`,
                download: true,
                "data-format": format,
                class: "button-link",
              },
              format.toUpperCase(),
            ),
          ),
        ),
      ),
    );
  }

  // --- the events stream ------------------------------------------------------------------------
  function open() {
    close();
    stream = new EventSource(`${base}/events`);
    stream.addEventListener("status", (event) => onStatus(JSON.parse(event.data)));
    stream.addEventListener("chunk", (event) => onChunk(JSON.parse(event.data)));
    stream.addEventListener("queue", (event) => onQueue(JSON.parse(event.data)));
    stream.addEventListener("error", () => {
      // CLOSED: refused (signed out, deleted), not a dropped line that EventSource resumes itself.
      if (stream?.readyState === EventSource.CLOSED) {
        close();
        reopenTimer = setTimeout(reread, REOPEN_MS);
      }
    });
  }

  function close() {
    clearTimeout(reopenTimer);
    stream?.close();
    stream = null;
  }

  async function reread() {
    try {
      job = await request("GET", base, { signal });
      draw();
      if (isActive(job.status)) open();
      else finished();
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 404) {
        showError(jobError, { detail: "This job no longer exists." });
        return;
      }
      if (!(error instanceof ApiError && error.status === 401)) reopenTimer = setTimeout(reread, REOPEN_MS);
    }
  }

  function onStatus(data) {
    const changed = data.status !== job.status;
    job = {
      ...job,
      status: data.status,
      error: data.error,
      progress: { ...job.progress, chunks_total: data.chunks_total, chunks_completed: data.chunks_completed },
    };
    draw();
    if (changed) announce(`Status: ${data.status}.`);
    if (isFinal(data.status)) {
      close();
      finished(true);
    }
  }

  function onChunk(chunk) {
    chunksSeen = Math.max(chunksSeen, chunk.index + 1);
    transcript.addChunk(chunk);
    drawProgress(job.progress.chunks_total, job.progress.chunks_completed);
  }

  function onQueue(data) {
    job = { ...job, queue_position: data.queue_position, eta_seconds: data.eta_seconds };
    if (isActive(job.status)) drawQueue(data.queue_position, data.eta_seconds);
  }

  /** The job ended: the final transcript, or what went wrong. `fresh`: read the job again. */
  async function finished(fresh = false) {
    try {
      if (fresh) {
        job = await request("GET", base, { signal });
        draw();
      }
      if (job.status === "completed") await showTranscript();
      else if (job.status === "canceled") transcript.showNote("The job was canceled before it finished.");
      else if (job.status === "failed") transcript.showNote("No transcript: the job failed.");
    } catch (error) {
      if (!isAbort(error)) showError(jobError, error);
    }
  }

  async function showTranscript() {
    for (let attempt = 1; ; attempt += 1) {
      const body = await request("GET", `${base}/transcript`, { query: { format: "json" }, signal });
      if (body && Array.isArray(body.segments)) {
        transcript.showFinal(body);
        if (player.error) player.load(); // a URL job's audio exists now
        return;
      }
      if (attempt >= TRANSCRIPT_TRIES)
        throw new Error("The transcript is not ready yet. Reload the page in a moment.");
      await new Promise((resolve) => setTimeout(resolve, TRANSCRIPT_RETRY_MS));
    }
  }

  // --- actions ----------------------------------------------------------------------------------
  async function act(action) {
    try {
      const result = await runAction(action, job, signal);
      if (!result.done) return;
      announce(result.message);
      if (!result.job) {
        close();
        ctx.navigate("/jobs", { flash: result.message });
        return;
      }
      job = result.job;
      if (action === "retry") {
        chunksSeen = 0;
        transcript.reset("The transcript appears here as the audio is transcribed.");
      }
      draw();
      if (isActive(job.status)) open();
      else {
        close();
        finished();
      }
    } catch (error) {
      if (!isAbort(error)) showError(jobError, error);
    }
  }

  signal.addEventListener("abort", close);

  return {
    start() {
      draw();
      if (job.status === "completed") {
        transcript.showNote("Loading the transcript…");
        finished();
      } else if (isActive(job.status)) {
        transcript.reset("The transcript appears here as the audio is transcribed.");
        open();
      } else finished();
    },
  };
}

/** A date in few words, in a <time> that keeps the exact one; `since`: see briefTime. */
function when(iso, since = null) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: localTime(iso) }, briefTime(iso, since));
}

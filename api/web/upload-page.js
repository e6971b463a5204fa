// The upload page (/): options, a drop zone and picker for several files, the uploads in
// progress (ul#uploads), a URL form and the usage panel.
//
// Uploads outlive the page: their list items are kept here and put back when the page is drawn
// again, so going to the jobs list and back neither stops nor forgets an upload.

import { ApiError, isAbort, request, sendFile } from "./api.js";
import { announce, errorText, field, h, heading, replace } from "./dom.js";
import { bytes } from "./format.js";
import { usagePanel } from "./usage.js";

// Files sent at once; the rest wait their turn.
const PARALLEL_UPLOADS = 2;

const uploads = []; // { li, run(): Promise, abort() }
let uploadsOwner = null; // the user the list belongs to
let running = 0;
let waiting = [];
let chosen = { language: "", model: "", timestamps: "segment", dialogue: false };
let onJobCreated = () => {};

export async function render(ctx) {
  if (uploadsOwner !== ctx.user.id) forgetUploads(ctx.user.id);
  const usage = usagePanel();
  const options = optionsPanel(ctx.signal);
  const list = h(
    "ul",
    { id: "uploads", class: "upload-list" },
    uploads.map((u) => u.li),
  );
  const listSection = h(
    "section",
    { class: "panel", "aria-labelledby": "uploads-title" },
    h("h2", { id: "uploads-title" }, "Uploads"),
    list,
    h("p", { class: "muted empty-note" }, "Files you add appear here with their progress."),
  );
  const add = (item) => {
    uploads.unshift(item);
    list.prepend(item.li);
  };
  onJobCreated = () => usage.load(ctx.signal).catch(() => {});
  ctx.signal.addEventListener("abort", () => {
    onJobCreated = () => {};
  });
  replace(
    ctx.main,
    heading("Upload"),
    h(
      "div",
      { class: "upload-layout" },
      h(
        "div",
        { class: "upload-main" },
        options.panel,
        filesPanel(ctx.signal, options, add),
        // Right under the files: a file's progress shows without scrolling once it is chosen.
        listSection,
        urlPanel(options, add),
      ),
      h("aside", { class: "upload-aside" }, usage.panel),
    ),
  );
  await Promise.all([usage.load(ctx.signal), options.loadChoices()]);
}

function forgetUploads(userId) {
  for (const item of uploads) item.abort();
  uploads.length = 0;
  waiting = [];
  uploadsOwner = userId;
}

// --- options ------------------------------------------------------------------------------------

function optionsPanel(signal) {
  const language = h(
    "select",
    { id: "opt-language", name: "language" },
    h("option", { value: "" }, "Detect"),
  );
  language.value = chosen.language;
  const model = h("select", { id: "opt-model", name: "model" }, h("option", { value: "" }, "Default"));
  const timestamps = h(
    "select",
    { id: "opt-timestamps", name: "timestamps" },
    h("option", { value: "segment" }, "Segments"),
    h("option", { value: "word" }, "Segments and words"),
  );
  timestamps.value = chosen.timestamps;
  const dialogue = h("input", {
    id: "opt-dialogue",
    name: "dialogue",
    type: "checkbox",
    checked: chosen.dialogue,
  });
  const remember = () => {
    chosen = {
      language: language.value,
      model: model.value,
      timestamps: timestamps.value,
      dialogue: dialogue.checked,
    };
  };
  const panel = h(
    "section",
    { class: "panel", "aria-labelledby": "options-title" },
    h("h2", { id: "options-title" }, "Options"),
    h(
      "div",
      { class: "options-row", on: { change: remember } },
      field("Language", language, "Detect: the language is found from the audio."),
      field("Model", model),
      field("Timestamps", timestamps, "Word timings let you jump to any word."),
      h(
        "div",
        { class: "field field-check" },
        dialogue,
        h("label", { for: "opt-dialogue" }, "Dialogue: label who speaks"),
      ),
    ),
  );
  async function loadChoices() {
    await Promise.all([loadLanguages(), loadModels()]);
  }
  async function loadLanguages() {
    const list = await request("GET", "/v1/languages", { signal });
    language.append(...list.data.map(({ code, name }) => h("option", { value: code }, `${name} (${code})`)));
    language.value = chosen.language;
  }
  async function loadModels() {
    const list = await request("GET", "/v1/models", { signal });
    const found = list.data.map((m) => h("option", { value: m.id }, modelLabel(m)));
    if (!found.length) return;
    replace(model, found);
    const preferred = list.data.find((m) => m.id === chosen.model) || list.data.find((m) => m.default);
    model.value = (preferred || list.data[0]).id;
    remember();
  }
  const read = () => ({
    language: language.value,
    model: model.value,
    timestamps: timestamps.value,
    dialogue: dialogue.checked,
  });
  return { panel, loadChoices, read };
}

function modelLabel(model) {
  const notes = [model.default ? "default" : null, model.multilingual ? null : "English only"].filter(
    Boolean,
  );
  return notes.length ? `${model.id} (${notes.join(", ")})` : model.id;
}

/** The JSON members of POST /v1/jobs for these options. */
function jobOptions(options) {
  const body = { timestamps: options.timestamps };
  if (options.language) body.language = options.language;
  if (options.model) body.model = options.model;
  if (options.dialogue) body.mode = "dialogue";
  return body;
}

// --- files --------------------------------------------------------------------------------------

function filesPanel(signal, options, add) {
  const input = h("input", {
    id: "file-input",
    name: "files",
    type: "file",
    multiple: true,
    accept: "audio/*,video/*",
  });
  const zone = h(
    "div",
    {
      id: "drop-zone",
      class: "drop-zone",
      role: "button",
      tabindex: "0",
    },
    // Its name is all of its text, the hint included: what a screen reader says is what shows.
    h("span", { class: "drop-title" }, "Drop audio or video files here"),
    h("span", { class: "hint" }, "or press Enter to choose files. Several at once are fine."),
  );
  const take = (files) => {
    const list = Array.from(files || []);
    for (const file of list) add(queueUpload(file, options.read()));
    if (list.length) announce(`${list.length} ${list.length === 1 ? "file" : "files"} added to the uploads.`);
  };
  input.addEventListener("change", () => {
    take(input.files);
    input.value = ""; // the same file may be chosen again
  });
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  zone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    take(event.dataTransfer.files);
  });
  // A file dropped beside the zone would make the browser leave the page to show it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault(), { signal });
  }
  return h(
    "section",
    { class: "panel", "aria-labelledby": "files-title" },
    h("h2", { id: "files-title" }, "Files"),
    zone,
    h("div", { class: "picker" }, h("label", { for: "file-input" }, "Or choose files:"), input),
  );
}

function queueUpload(file, options) {
  const item = uploadItem(file.name, "data-file", bytes(file.size));
  const controller = new AbortController();
  const entry = { li: item.li, abort: () => controller.abort() };
  entry.run = () => uploadFile(file, options, item, controller.signal);
  waiting.push(entry);
  pump();
  return entry;
}

function pump() {
  while (running < PARALLEL_UPLOADS && waiting.length) {
    const entry = waiting.shift();
    running += 1;
    warnBeforeLeaving();
    entry.run().finally(() => {
      running -= 1;
      warnBeforeLeaving();
      pump();
    });
  }
}

async function uploadFile(file, options, item, signal) {
  try {
    if (!file.size) throw new ApiError(0, "empty_file", "The file is empty.");
    item.state("Preparing the upload…");
    const ticket = await request("POST", "/v1/uploads", {
      json: { filename: file.name, size: file.size, content_type: file.type || null },
      signal,
    });
    item.state("Uploading…");
    await sendFile(ticket, file, (fraction) => item.progress(fraction), signal);
    item.progress(1);
    item.state("Uploaded; creating the job…");
    const job = await request("POST", "/v1/jobs", {
      json: { object_key: ticket.object_key, filename: file.name, ...jobOptions(options) },
      signal,
    });
    item.created(job);
  } catch (error) {
    if (!isAbort(error)) item.failed(error);
  }
}

function warnBeforeLeaving() {
  window.removeEventListener("beforeunload", holdPage);
  if (running || waiting.length) window.addEventListener("beforeunload", holdPage);
}

function holdPage(event) {
  event.preventDefault();
  event.returnValue = "";
}

// --- by URL -------------------------------------------------------------------------------------

function urlPanel(options, add) {
  const url = h("input", {
    id: "url-input",
    name: "url",
    type: "url",
    inputmode: "url",
    placeholder: "https://example.com/interview.mp3",
    autocomplete: "off",
  });
  const form = h(
    "form",
    { id: "url-form", class: "url-form", novalidate: true },
    h("div", { class: "field grow" }, h("label", { for: "url-input" }, "Audio or video URL"), url),
    h("button", { id: "url-submit", type: "submit", class: "button-primary" }, "Transcribe URL"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const address = url.value.trim();
    if (!address) {
      url.focus();
      announce("Enter the URL of an audio or video file.");
      return;
    }
    const item = uploadItem(address, "data-url", null);
    add({ li: item.li, abort: () => {} });
    item.state("Creating the job…");
    try {
      const job = await request("POST", "/v1/jobs", {
        json: { audio_url: address, ...jobOptions(options.read()) },
      });
      item.created(job);
      url.value = "";
    } catch (error) {
      item.failed(error);
    }
  });
  return h(
    "section",
    { class: "panel", "aria-labelledby": "url-title" },
    h("h2", { id: "url-title" }, "From a URL"),
    form,
  );
}

// --- one item of ul#uploads ---------------------------------------------------------------------

function uploadItem(name, key, size) {
  const bar = h("progress", { max: "100", value: "0", "aria-label": `Upload of ${name}` });
  const stateText = h("p", { class: "upload-state" });
  const li = h(
    "li",
    { class: "upload-item", [key]: name },
    h(
      "div",
      { class: "upload-head" },
      h("span", { class: "upload-name" }, name),
      size && h("span", { class: "muted" }, size),
    ),
    key === "data-file" ? bar : null,
    stateText,
  );
  let announced = 0;
  return {
    li,
    state(text) {
      stateText.textContent = text;
    },
    progress(fraction) {
      const percent = Math.round(fraction * 100);
      bar.value = percent;
      stateText.textContent = `Uploading… ${percent} %`;
      // Every quarter, not every event: a screen reader cannot keep up with more.
      const quarter = Math.floor(percent / 25) * 25;
      if (quarter > announced && quarter < 100) {
        announced = quarter;
        announce(`${name}: ${quarter} % uploaded.`);
      }
    },
    created(job) {
      li.classList.add("done");
      replace(
        stateText,
        "Job created. ",
        h(
          "a",
          { href: `/jobs/${encodeURIComponent(job.id)}`, "data-job-id": job.id },
          `View the job for ${name}`,
        ),
      );
      announce(`${name}: job created.`);
      onJobCreated();
    },
    failed(error) {
      li.classList.add("failed");
      bar.remove();
      stateText.remove();
      li.append(h("p", { class: "form-error", role: "alert" }, `${name}: ${errorText(error)}`));
      if (!(error instanceof ApiError)) console.error(error);
    },
  };
}

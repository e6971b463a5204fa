// The transcript beside the audio player (#transcript): text growing chunk by chunk while the job
// runs, then the final segments; the segment being played is highlighted and followed; a click,
// Enter or Space on a segment or a word plays from there.

import { h, replace } from "./dom.js";
import { clock } from "./format.js";

// Times a seek lands on may read back a hair early (3.52 -> 3.5199…): that still counts as 3.52.
const EPSILON = 0.05;
// A segment stays highlighted this long past its end, across the short pauses between segments.
const LINGER = 0.4;
// After the reader scrolls, the view leaves the page where they put it for this long.
const FOLLOW_PAUSE_MS = 4000;
const SCROLL_KEYS = new Set(["PageUp", "PageDown", "Home", "End", "ArrowUp", "ArrowDown", " "]);

/**
 * The transcript of `player`'s audio. `onChange` is called whenever its text changes (so that a
 * search can be run again).
 */
export function transcriptView({ player, playerBox, signal, onChange = () => {} }) {
  const root = h("div", { id: "transcript", class: "transcript", "data-partial": "true" });
  let segments = []; // the .segment elements, in time order
  let chunks = new Set(); // chunk indexes shown while partial
  let active = null;
  let spoken = null;
  let userScrolledAt = 0;
  // Nothing is "being played" before the first play or seek: 0:00 on load is not a position.
  let started = false;

  function emptyNote(text) {
    replace(root, h("p", { class: "transcript-note muted" }, text));
  }

  function reset(note) {
    root.dataset.partial = "true";
    segments = [];
    chunks = new Set();
    active = null;
    emptyNote(note);
    onChange();
  }

  function addChunk(chunk) {
    if (root.dataset.partial !== "true" || chunks.has(chunk.index) || !chunk.text.trim()) return;
    if (!chunks.size) replace(root);
    chunks.add(chunk.index);
    const segment = segmentElement({ start: chunk.start, end: chunk.end }, [chunk.text.trim()]);
    segment.dataset.chunk = String(chunk.index);
    root.append(segment);
    segments.push(segment);
    onChange();
  }

  function showFinal(transcript) {
    const items = transcript.segments || [];
    let previousSpeaker = null;
    segments = items.map((segment) => {
      const turn = segment.speaker && segment.speaker !== previousSpeaker;
      previousSpeaker = segment.speaker || previousSpeaker;
      return finalSegment(segment, turn);
    });
    active = null;
    root.dataset.partial = "false";
    if (segments.length) replace(root, segments);
    else emptyNote("No speech was found in this file.");
    onChange();
    sync();
  }

  function showNote(text) {
    if (!segments.length) emptyNote(text);
  }

  // --- playback -------------------------------------------------------------------------------

  function segmentAt(time) {
    let low = 0;
    let high = segments.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (Number(segments[mid].dataset.start) <= time + EPSILON) {
        found = mid;
        low = mid + 1;
      } else high = mid - 1;
    }
    if (found < 0) return null;
    const segment = segments[found];
    return time <= Number(segment.dataset.end) + LINGER ? segment : null;
  }

  function setActive(segment) {
    if (segment === active) return false;
    if (active) {
      active.classList.remove("active");
      active.removeAttribute("aria-current");
    }
    active = segment;
    if (segment) {
      segment.classList.add("active");
      segment.setAttribute("aria-current", "true");
    }
    return true;
  }

  function setSpokenWord(time) {
    let word = null;
    if (active) {
      for (const candidate of active.querySelectorAll(".word")) {
        if (Number(candidate.dataset.start) <= time + EPSILON) word = candidate;
        else break;
      }
    }
    if (word === spoken) return;
    spoken?.classList.remove("spoken");
    word?.classList.add("spoken");
    spoken = word;
  }

  function sync() {
    if (!started) return;
    const time = player.currentTime;
    const changed = setActive(segmentAt(time));
    setSpokenWord(time);
    if (changed && active && !player.paused) follow(active);
  }

  /** Brings the playing segment into view, unless it is in view or the reader is scrolling. */
  function follow(segment) {
    if (Date.now() - userScrolledAt < FOLLOW_PAUSE_MS || inView(segment)) return;
    const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    segment.scrollIntoView({ block: "center", behavior: reduce ? "auto" : "smooth" });
  }

  function inView(element) {
    const box = element.getBoundingClientRect();
    let top = 0;
    // On a phone the player sticks over the top of the transcript: that part is not "in view".
    const stuck = playerBox.getBoundingClientRect();
    if (stuck.left < box.right && stuck.right > box.left && stuck.top <= 1) top = stuck.bottom;
    return box.top >= top && box.bottom <= window.innerHeight;
  }

  /** Plays from `element`'s data-start (a segment or a word). */
  function seek(element, play = true) {
    const start = Number(element.dataset.start);
    if (!Number.isFinite(start)) return;
    started = true;
    player.currentTime = start;
    setActive(element.closest(".segment"));
    setSpokenWord(start);
    if (play) player.play().catch(() => {}); // refused (no audio yet): the seek still stands
  }

  // --- events ---------------------------------------------------------------------------------

  const start = () => {
    started = true;
    sync();
  };
  for (const type of ["play", "seeked"]) player.addEventListener(type, start, { signal });
  player.addEventListener("timeupdate", sync, { signal });
  const scrolled = () => {
    userScrolledAt = Date.now();
  };
  window.addEventListener("wheel", scrolled, { signal, passive: true });
  window.addEventListener("touchmove", scrolled, { signal, passive: true });
  window.addEventListener(
    "keydown",
    (event) => {
      if (SCROLL_KEYS.has(event.key) && !event.target.closest?.("input, select, textarea, .segment"))
        scrolled();
    },
    { signal },
  );

  root.addEventListener("click", (event) => {
    const target = event.target.closest(".word, .segment");
    // A drag that selected text (to copy it) is not a request to play.
    if (!target || !root.contains(target) || String(window.getSelection())) return;
    seek(target);
  });
  root.addEventListener("keydown", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement) || !target.matches(".word, .segment")) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      seek(target);
    } else if (moveFocus(target, event.key)) event.preventDefault();
  });

  return { root, reset, addChunk, showFinal, showNote, seek, segments: () => segments };
}

/** Arrow keys: left / right between the words of a segment, up / down between segments. */
function moveFocus(target, key) {
  const segment = target.closest(".segment");
  let next = null;
  if (key === "ArrowRight" || key === "ArrowLeft") {
    const words = Array.from(segment.querySelectorAll(".word"));
    const at = words.indexOf(target);
    next = key === "ArrowRight" ? words[at + 1] : at > 0 ? words[at - 1] : at === 0 ? segment : null;
  } else if (key === "ArrowDown") next = segment.nextElementSibling;
  else if (key === "ArrowUp") next = segment.previousElementSibling;
  if (!next?.matches?.(".segment, .word")) return false;
  next.focus();
  return true;
}

// --- elements -----------------------------------------------------------------------------------

// The start time is shown by the stylesheet (from data-time), so that it is not part of the text:
// not copied with it, not found by the search, not in innerText.
function segmentElement(segment, content, speaker) {
  return h(
    "div",
    {
      class: "segment",
      tabindex: "0",
      "data-start": String(segment.start),
      "data-end": String(segment.end),
      "data-time": clock(segment.start),
      "data-speaker": speaker || null,
    },
    h("span", { class: "seg-text" }, content),
  );
}

function finalSegment(segment, turn) {
  const words = segment.words || [];
  const content = words.length ? wordSpans(words) : [segment.text];
  const element = segmentElement(segment, content, segment.speaker);
  if (turn) element.prepend(h("span", { class: "speaker" }, `Speaker ${segment.speaker}`));
  return element;
}

/** Whisper's words carry their own leading space; a hosted backend's words are bare. */
function wordSpans(words) {
  const spaced = words.some((word) => /^\s/.test(word.text));
  const parts = [];
  words.forEach((word, i) => {
    const gap = spaced ? /^\s*/.exec(word.text)[0] : i ? " " : "";
    if (gap && i) parts.push(gap);
    parts.push(
      h(
        "span",
        { class: "word", tabindex: "-1", "data-start": String(word.start), "data-end": String(word.end) },
        word.text.trim(),
      ),
    );
  });
  return parts;
}

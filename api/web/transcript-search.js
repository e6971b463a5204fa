// Search in the transcript: every match marked with <mark>, a count, next / previous (Enter and
// Shift+Enter in the box); the current match is scrolled to and the audio seeks to it.

import { announce, debounce } from "./dom.js";

const SEARCH_DELAY_MS = 200;

/**
 * Wires `input`, `prev`, `next` and `count` to the text of `root`'s .seg-text elements.
 * `seek(element)` moves the audio to a word or segment. Returns { refresh } to run the search
 * again after the transcript changed.
 */
export function transcriptSearch({ root, input, prev, next, count, seek }) {
  let matches = []; // each an array of the <mark> elements of one match
  let current = -1;
  let searched = null; // the query `matches` are for

  function run() {
    later.cancel();
    clearMarks(root);
    searched = input.value.trim();
    matches = searched ? markAll(root, searched) : [];
    current = -1;
    report();
  }

  function report() {
    let text = "";
    if (searched && !matches.length) text = "No matches";
    else if (matches.length && current < 0)
      text = `${matches.length} ${matches.length === 1 ? "match" : "matches"}`;
    else if (matches.length) text = `${current + 1} of ${matches.length}`;
    count.textContent = text;
    prev.disabled = next.disabled = matches.length === 0;
  }

  function go(step) {
    if (input.value.trim() !== searched) run();
    if (!matches.length) {
      announce("No matches");
      return;
    }
    for (const mark of matches[current] || []) mark.classList.remove("current");
    current = (current + step + matches.length) % matches.length;
    const marks = matches[current];
    for (const mark of marks) mark.classList.add("current");
    marks[0].scrollIntoView({ block: "center", behavior: "auto" });
    const place = marks[0].closest(".word") || marks[0].closest(".segment");
    if (place) seek(place, false);
    report();
  }

  const later = debounce(run, SEARCH_DELAY_MS);
  input.addEventListener("input", later);
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    go(event.shiftKey ? -1 : 1);
  });
  prev.addEventListener("click", () => go(-1));
  next.addEventListener("click", () => go(1));
  report();
  return {
    refresh() {
      if (searched) run();
    },
  };
}

function clearMarks(root) {
  for (const mark of root.querySelectorAll("mark")) {
    const parent = mark.parentNode;
    mark.replaceWith(...mark.childNodes);
    parent.normalize();
  }
}

/** Marks every match of `query` (any case) in each segment's text, even one across words. */
function markAll(root, query) {
  const pattern = new RegExp(escapeRegExp(query), "giu");
  const found = [];
  for (const text of root.querySelectorAll(".seg-text")) {
    const nodes = textNodes(text);
    const whole = nodes.map((node) => node.data).join("");
    const ranges = Array.from(whole.matchAll(pattern), (m) => [m.index, m.index + m[0].length]);
    // Marked from the last to the first, so that splitting a text node leaves the offsets of the
    // earlier matches in it as they were.
    const marked = ranges.reverse().map(([start, end]) => wrap(nodes, start, end));
    found.push(...marked.reverse());
  }
  return found;
}

function textNodes(element) {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  return nodes;
}

/** Wraps the characters start..end of the text `nodes` hold, one <mark> per node it touches. */
function wrap(nodes, start, end) {
  const pieces = [];
  let offset = 0;
  for (const node of nodes) {
    const length = node.data.length;
    const from = Math.max(start, offset);
    const to = Math.min(end, offset + length);
    if (from < to) pieces.push([node, from - offset, to - offset]);
    offset += length;
  }
  const marks = [];
  for (const [node, from, to] of pieces.reverse()) {
    node.splitText(to);
    const middle = node.splitText(from);
    const mark = document.createElement("mark");
    middle.replaceWith(mark);
    mark.append(middle);
    marks.unshift(mark);
  }
  return marks;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

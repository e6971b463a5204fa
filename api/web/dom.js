// Element creation without innerHTML: every piece of server data reaches the page as text.
// Style attributes and on* attributes are refused here too: the Content-Security-Policy would block them.

/**
 * h("button", { class: "primary", type: "button", on: { click } }, "Save")
 * attrs: `class`, `text`, `on` ({event: handler}) are special; true sets an empty attribute,
 * false / null / undefined leave it out; anything else is set with setAttribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    setAttr(el, name, value);
  }
  append(el, children);
  return el;
}

function setAttr(el, name, value) {
  if (value === false || value === null || value === undefined) return;
  if (name === "style" || (name !== "on" && name.toLowerCase().startsWith("on"))) {
    throw new Error(`h(): "${name}" is not allowed (CSP); use classes and addEventListener`);
  }
  if (name === "class") el.className = value;
  else if (name === "text") el.textContent = value;
  else if (name === "on") {
    for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
  } else el.setAttribute(name, value === true ? "" : String(value));
}

/** Appends strings (as text), nodes and nested arrays; skips null, undefined and false. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let liveTimer = 0;

/** Says `message` to screen readers through the page's polite live region. */
export function announce(message) {
  const live = document.getElementById("live");
  if (!live) return;
  // Emptied first so that the same message twice in a row is read twice.
  live.textContent = "";
  clearTimeout(liveTimer);
  liveTimer = setTimeout(() => {
    live.textContent = message;
  }, 50);
}

/** An element with role=alert that shows an error's detail; empty (and hidden by CSS) until then. */
export function alertBox(id) {
  return h("p", { id, class: "form-error", role: "alert" });
}

export function showError(box, error) {
  box.textContent = error ? errorText(error) : "";
}

export function errorText(error) {
  if (error && typeof error.detail === "string" && error.detail) return error.detail;
  if (error && error.message) return error.message;
  return "Something went wrong. Please try again.";
}

/** A labelled form field: <div class="field"><label>…</label><input>…<p class="hint"></div>. */
export function field(label, control, hint) {
  const parts = [h("label", { for: control.id, text: label })];
  if (hint) {
    const hintId = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(control, h("p", { id: hintId, class: "hint", text: hint }));
  } else {
    parts.push(control);
  }
  return h("div", { class: "field" }, parts);
}

export function visuallyHidden(text) {
  return h("span", { class: "visually-hidden", text });
}

/** Calls `fn` once `ms` have passed without another call. */
export function debounce(fn, ms) {
  let timer = 0;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** A page's one <h1>; focusable by script so that a page change can move focus to it. */
export function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

// The API, as the page uses it: same-origin fetch with the session cookie, the CSRF token on
// every write, errors as ApiError carrying the server's {"error", "detail"}.

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

// In memory only: a script injected elsewhere cannot read it back from storage, and a reload
// fetches it again with GET /v1/web/session.
let csrfToken = null;
let unauthorizedHandler = null;

export class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

export function isAbort(error) {
  return error instanceof DOMException && error.name === "AbortError";
}

/** Called when a request meets 401: the session has ended (expired, signed out elsewhere). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/**
 * request("GET", "/v1/jobs", { query: { limit: 20 } }) -> parsed JSON (null for 204).
 * options: query (object; empty values left out), json (a body), signal (AbortSignal),
 * quiet401 (do not treat 401 as the end of the session: sign-in itself).
 */
export async function request(method, path, options = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", signal: options.signal };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  }
  if (WRITE_METHODS.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(withQuery(path, options.query), init);
  if (response.status === 401 && !options.quiet401 && unauthorizedHandler) unauthorizedHandler();
  if (!response.ok) throw await errorOf(response);
  return body(response);
}

export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function body(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

async function errorOf(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  const detail = payload && typeof payload.detail === "string" ? payload.detail : statusDetail(response);
  return new ApiError(response.status, payload?.error || "http_error", detail);
}

function statusDetail(response) {
  if (response.status === 413) return "The file is too large.";
  if (response.status >= 500) return "The service is unavailable. Please try again shortly.";
  return `The request failed (${response.status} ${response.statusText}).`.replace(" )", ")");
}

// --- the session -------------------------------------------------------------------------------

function remember(session) {
  csrfToken = session.csrf_token;
  return session.user;
}

/** The signed-in user, or null; renews the cookie and the CSRF token. */
export async function loadSession() {
  try {
    return remember(await request("GET", "/v1/web/session", { quiet401: true }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signIn(email, password) {
  const session = await request("POST", "/v1/web/session", { json: { email, password }, quiet401: true });
  return remember(session);
}

export async function signOut() {
  try {
    await request("DELETE", "/v1/web/session", { quiet401: true });
  } finally {
    csrfToken = null;
  }
}

export function forgetSession() {
  csrfToken = null;
}

// --- uploads -----------------------------------------------------------------------------------

/**
 * Sends `file` as an upload ticket says (PUT the body, or POST a form with `fields` then `file`),
 * reporting progress (0..1). XMLHttpRequest rather than fetch: fetch reports no upload progress.
 */
export function sendFile(ticket, file, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const url = uploadUrl(ticket);
    xhr.open(ticket.method, url);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else reject(new ApiError(xhr.status, "upload_failed", uploadErrorDetail(xhr)));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "network_error", "The upload failed: the connection was lost.")),
    );
    xhr.addEventListener("abort", () => reject(new DOMException("upload aborted", "AbortError")));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(uploadBody(ticket, file, xhr));
  });
}

// A PUT ticket is always this API's own upload route (local storage; S3 takes a POST form), so it
// is sent to this origin whatever host name the server put in the URL: a browser that reached the
// service as "localhost" must not be sent to "127.0.0.1" (another origin, refused by the CSP).
function uploadUrl(ticket) {
  if (ticket.method !== "PUT") return ticket.upload_url;
  const url = new URL(ticket.upload_url, location.origin);
  return url.pathname + url.search;
}

function uploadBody(ticket, file, xhr) {
  if (ticket.method === "PUT") {
    for (const [name, value] of Object.entries(ticket.headers || {})) xhr.setRequestHeader(name, value);
    // Same origin (see uploadUrl): the token goes with it like any write of this page. Never on
    // the POST form, which goes to another origin.
    if (csrfToken) xhr.setRequestHeader("X-CSRF-Token", csrfToken);
    return file;
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(ticket.fields || {})) form.append(name, value);
  form.append("file", file);
  return form;
}

function uploadErrorDetail(xhr) {
  try {
    const payload = JSON.parse(xhr.responseText);
    if (typeof payload.detail === "string") return payload.detail;
  } catch {
    // S3 answers XML: <Error><Message>…</Message></Error>.
    const message = /<Message>([^<]*)<\/Message>/.exec(xhr.responseText || "");
    if (message) return message[1];
  }
  return xhr.status === 413 ? "The file is too large." : `The upload failed (${xhr.status}).`;
}

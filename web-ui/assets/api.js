// The station's API as seen from the browser: the session cookie plus its CSRF token.

export const BASE = "/scanner/api/v1";
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

function toLogin() {
  const next = location.pathname + location.hash;
  location.replace(`/login?next=${encodeURIComponent(next)}`);
}

export async function startSession() {
  const resp = await fetch("/auth/session", { credentials: "same-origin" });
  if (resp.status === 401) {
    toLogin();
    return false;
  }
  csrfToken = (await resp.json()).csrf_token;
  return true;
}

export async function request(path, { method = "GET", body, raw, contentType } = {}) {
  const headers = {};
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    if (contentType) headers["Content-Type"] = contentType;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const url = path.startsWith("/") && !path.startsWith(BASE) && !path.startsWith("/auth") ? BASE + path : path;
  const resp = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  if (resp.status === 401) {
    toLogin();
    throw new ApiError(401, "logged out");
  }
  const data = resp.headers.get("Content-Type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const err = data?.error || {};
    throw new ApiError(resp.status, err.message || `${resp.status} ${resp.statusText}`, err.field);
  }
  return data;
}

export const get = (path) => request(path);
export const post = (path, body) => request(path, { method: "POST", body });
export const patch = (path, body) => request(path, { method: "PATCH", body });
export const put = (path, body) => request(path, { method: "PUT", body });

export async function logout() {
  try {
    await request("/auth/logout", { method: "POST" });
  } finally {
    location.replace("/login");
  }
}

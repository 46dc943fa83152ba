// The station's API as seen from the browser: the session cookie plus its CSRF token.

import { t } from "./login/i18n.js";

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
  const session = await resp.json();
  csrfToken = session.csrf_token;
  // What the UI shows follows the role (CSS hides [data-needs] above it); the server refuses
  // those requests anyway.
  me = { username: session.username, role: session.role };
  document.body.dataset.role = session.role;
  return true;
}

const RANK = { viewer: 0, operator: 1, admin: 2 };
let me = { username: null, role: null };

// The session's CSRF token, for a request the helpers below do not make (a file download).
export function csrf() {
  return csrfToken;
}

export function whoami() {
  return me;
}

// Whether the logged-in user has at least this role.
export function can(role) {
  return me.role !== null && RANK[me.role] >= RANK[role];
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

// After a change that restarts the station: wait until it answers again, then reload.
export async function waitForRestart(status) {
  status.textContent = t("Restarting the station…");
  await new Promise((r) => setTimeout(r, 1500));
  for (let i = 0; i < 120; i++) {
    try {
      const resp = await fetch("/healthz", { cache: "no-store" });
      if (resp.ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  location.reload();
}

export async function logout() {
  try {
    await request("/auth/logout", { method: "POST" });
  } finally {
    location.replace("/login");
  }
}

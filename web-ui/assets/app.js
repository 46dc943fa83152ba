// The app shell: login check, hash routes, and one live event stream shared by the views.

import { BASE, get, logout, startSession, whoami } from "./api.js";
import { clear, h } from "./dom.js";
import { languageSwitch, loadLanguage, t, translateDom } from "./login/i18n.js";
import * as live from "./views/live.js";
import * as sessions from "./views/sessions.js";
import * as session from "./views/session.js";
import * as capture from "./views/capture.js";
import * as products from "./views/products.js";
import * as dashboard from "./views/dashboard.js";
import * as camera from "./views/camera.js";
import * as admin from "./views/admin.js";
import * as settings from "./views/settings.js";
import * as noreads from "./views/noreads.js";

const routes = [
  [/^#\/live$/, live, "live"],
  [/^#\/sessions$/, sessions, "sessions"],
  [/^#\/sessions\/([\w-]+)$/, session, "sessions"],
  [/^#\/captures\/([\w-]+)$/, capture, "live"],
  [/^#\/products$/, products, "products"],
  [/^#\/dashboard$/, dashboard, "dashboard"],
  [/^#\/camera$/, camera, "camera"],
  [/^#\/admin$/, admin, "admin"],
  [/^#\/settings$/, settings, "settings"],
  [/^#\/noreads$/, noreads, "dashboard"],
];

// ---- live events: one EventSource, many listeners ----------------------------------------

const listeners = new Map();
let source = null;

export function on(kind, fn) {
  if (!listeners.has(kind)) listeners.set(kind, new Set());
  listeners.get(kind).add(fn);
  return () => listeners.get(kind).delete(fn);
}

function dispatch(kind, data) {
  for (const fn of listeners.get(kind) || []) {
    try {
      fn(data);
    } catch (e) {
      console.error(e);
    }
  }
}

function connect() {
  const conn = document.getElementById("conn");
  const text = conn.querySelector(".text");
  source = new EventSource(`${BASE}/events`);
  source.addEventListener("open", () => {
    conn.className = "conn live";
    text.textContent = t("live");
    conn.title = t("Live updates are flowing");
  });
  source.addEventListener("error", async () => {
    conn.className = "conn down";
    text.textContent = t("offline");
    conn.title = t("Live updates stopped; retrying");
    // A closed stream may mean the login ended: check, and go to the login page if so.
    if (source.readyState === EventSource.CLOSED) {
      // The station may be restarting (a settings change): try again until it answers.
      if (await startSession().catch(() => true)) setTimeout(connect, 3000);
    }
  });
  for (const kind of ["capture", "session", "proposal", "product", "catalog", "alert", "dropped", "shutdown"]) {
    source.addEventListener(kind, (event) => dispatch(kind, JSON.parse(event.data)));
  }
}

// ---- routing -------------------------------------------------------------------------------

let current = null;

async function render() {
  if (!location.hash || location.hash === "#/") {
    location.replace("#/live");
    return;
  }
  const view = document.getElementById("view");
  if (current?.cleanup) current.cleanup();
  current = null;
  let match = null;
  let found = null;
  for (const [pattern, module, nav] of routes) {
    match = location.hash.match(pattern);
    if (match) {
      found = [module, nav];
      break;
    }
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", found && a.dataset.route === found[1]);
    if (found && a.dataset.route === found[1]) a.setAttribute("aria-current", "page");
  }
  clear(view);
  // Every route sets the title (an unknown one too), so the tab never shows the last page's.
  document.title = "scanstation";
  if (!found) {
    view.append(h("h1", {}, t("Not found")), h("p", {}, t("No page at {hash}.", { hash: location.hash }), " ", h("a", { href: "#/live" }, t("Back to the live feed"))));
  } else {
    const ctx = { on, params: match.slice(1) };
    try {
      current = (await found[0].render(view, ctx)) || null;
    } catch (e) {
      if (!view.querySelector("h1")) view.prepend(h("h1", {}, t("Could not load this page")));
      view.append(h("p", { class: "error", role: "alert" }, t("Could not load this page: {error}", { error: e.message })));
    }
  }
  const heading = view.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
    document.title = `${heading.textContent} · scanstation`;
  }
}

async function main() {
  await loadLanguage();
  translateDom();
  document.getElementById("lang-slot").replaceWith(languageSwitch());
  if (!(await startSession())) return;
  document.getElementById("logout").addEventListener("click", logout);
  const me = whoami();
  if (me.username) document.getElementById("whoami").textContent = `${me.username} · ${t(me.role)}`;
  get("/stats")
    .then((s) => {
      document.getElementById("device-name").textContent = s.device_id || "scanstation";
    })
    .catch(() => {});
  connect();
  window.addEventListener("hashchange", render);
  await render();
}

main();

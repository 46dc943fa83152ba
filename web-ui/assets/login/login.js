// The login page: posts the password as JSON and returns to the page that sent us here.

import { languageSwitch, loadLanguage, t, translateDom } from "./i18n.js";

// The server's messages are English; the usual ones are shown in the page's language.
function loginError(status, message) {
  if (status === 401) return message === "wrong password" ? t("wrong password") : t("wrong user name or password");
  if (status === 429) return t("Too many failed logins; wait a moment and try again.");
  return message || t("Login failed ({status})", { status });
}

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const input = document.getElementById("password");
const username = document.getElementById("username");

// The one check of every redirect target: resolve it as the browser will and keep it only
// if it stays on this origin. A prefix test is not enough: a backslash or a tab after the
// first slash (next=/%5Chost/, next=/%09/host/) makes the browser read "//host", another origin.
function sameOriginPath(target) {
  try {
    const url = new URL(target, location.origin);
    if (url.origin === location.origin) return url.pathname + url.search + url.hash;
  } catch (e) {
    // not a URL at all
  }
  return "/";
}

function nextPage() {
  const next = sameOriginPath(new URLSearchParams(location.search).get("next") || "/");
  // The server never sees the #/page part; the browser kept it across the redirect.
  return next.includes("#") ? next : next + location.hash;
}

await loadLanguage();
translateDom();
document.title = `${t("Log in")} · scanstation`;
document.getElementById("lang-slot").replaceWith(languageSwitch());

// Already logged in (e.g. the back button): go straight on.
fetch("/auth/session", { credentials: "same-origin" }).then((r) => {
  if (r.ok) location.replace(nextPage());
}).catch(() => {});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const resp = await fetch("/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(username.value.trim() ? { username: username.value.trim(), password: input.value } : { password: input.value }),
    });
    if (resp.ok) {
      location.replace(nextPage());
      return;
    }
    const body = await resp.json().catch(() => ({}));
    error.textContent = loginError(resp.status, body?.error?.message);
    input.select();
  } catch (e) {
    error.textContent = t("The station does not answer; check the network.");
  } finally {
    button.disabled = false;
  }
});

// Small DOM helpers: build elements without innerHTML (no markup injection from data).

import { dateTime, language, number, percent as formatPercent, t } from "./login/i18n.js";

export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && !svg && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

// Like Element.append, but skips null/false and flattens arrays (optional parts of a view).
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function badge(text, cls = text) {
  return h("span", { class: `badge ${cls}` }, t(String(text)));
}

export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? dateTime(d, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : dateTime(d, { dateStyle: "short", timeStyle: "short" });
}

export function ago(iso) {
  if (!iso) return t("never");
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(language(), { numeric: "always", style: "short" });
  if (s < 60) return rtf.format(-Math.round(s), "second");
  if (s < 3600) return rtf.format(-Math.round(s / 60), "minute");
  if (s < 86400) return rtf.format(-Math.round(s / 3600), "hour");
  return rtf.format(-Math.round(s / 86400), "day");
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const unit = (value, u) => number(value, { style: "unit", unit: u, unitDisplay: "short", maximumFractionDigits: 1 });
  if (seconds < 60) return unit(Math.round(seconds), "second");
  if (seconds < 3600) return unit(Math.round(seconds / 60), "minute");
  return unit(seconds / 3600, "hour");
}

export function meter(percent) {
  const level = percent >= 75 ? "high" : percent >= 40 ? "mid" : "low";
  const fill = h("div", { class: `fill ${level}` });
  fill.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  return h(
    "div",
    { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent, "aria-label": t("completeness {percent}", { percent: formatPercent(percent / 100) }) },
    h("div", { class: "bar" }, fill),
    h("span", { class: "num" }, formatPercent(percent / 100)),
  );
}

let toastTimer = null;
export function toast(message, bad = false) {
  document.querySelector(".toast")?.remove();
  const el = h("div", { class: bad ? "toast bad" : "toast", role: bad ? "alert" : "status" }, message);
  document.body.append(el);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.remove(), bad ? 6000 : 3000);
}

export function announce(text) {
  const el = document.getElementById("announce");
  if (el) el.textContent = text;
}

// Scanner values carry control characters (GS, 0x1d, separates GS1 fields): show them visibly.
export function printable(value) {
  return String(value ?? "").replace(/[\x00-\x1f]/g, (c) => (c === "\x1d" ? "<GS>" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}

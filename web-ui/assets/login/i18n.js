// Translations: one JSON catalog per language under /assets/i18n/, keyed by the English text.
// The language is the user's choice (kept in localStorage), else the browser's first
// language we have, else English. Dates and numbers are formatted for it with Intl.

export const LANGUAGES = { en: "English", de: "Deutsch", fr: "Français", es: "Español", it: "Italiano" };
const STORE_KEY = "scanstation.lang";
let lang = "en";
let catalog = {};

export function chooseLanguage() {
  const saved = localStorage.getItem(STORE_KEY);
  if (saved && saved in LANGUAGES) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base in LANGUAGES) return base;
  }
  return "en";
}

export async function loadLanguage(wanted = chooseLanguage()) {
  lang = wanted in LANGUAGES ? wanted : "en";
  const resp = await fetch(`/assets/login/i18n/${lang}.json`, { credentials: "same-origin" });
  catalog = resp.ok ? await resp.json() : {};
  document.documentElement.lang = lang;
  return lang;
}

export function language() {
  return lang;
}

export function setLanguage(wanted) {
  localStorage.setItem(STORE_KEY, wanted);
  location.reload();
}

// The text for an English key, with {name} placeholders filled from params.
export function t(key, params) {
  const text = catalog[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

// Static markup: data-i18n="Key" sets the text, data-i18n-attr="attr:Key;attr2:Key2" attributes.
export function translateDom(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr, t(key));
    }
  }
}

export function number(n, options) {
  return new Intl.NumberFormat(lang, options).format(n);
}

export function percent(fraction) {
  return new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 0 }).format(fraction);
}

export function dateTime(date, options) {
  return new Intl.DateTimeFormat(lang, options).format(date);
}

// The language switch: a labelled <select> that reloads the page in the chosen language.
export function languageSwitch(doc = document) {
  const select = doc.createElement("select");
  select.id = "lang";
  select.setAttribute("aria-label", t("Language"));
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = doc.createElement("option");
    option.value = code;
    option.textContent = name;
    option.lang = code;
    if (code === lang) option.selected = true;
    select.append(option);
  }
  select.addEventListener("change", () => setLanguage(select.value));
  return select;
}

// Marks a string for the catalog where it is defined; t() translates it where it is shown.
export const N_ = (key) => key;

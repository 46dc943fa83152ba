// Settings (admins): every section of the config file as a form generated from the config
// model, with each key's documentation; preview (validated, a diff), apply (the daemon
// restarts with it), and a rollback to the file as it was before the last apply.

import { can, get, post, waitForRestart } from "../api.js";
import { append, clear, h, toast } from "../dom.js";
import { t } from "../login/i18n.js";

function input(field) {
  const id = `cfg-${field.key.replaceAll(".", "-")}`;
  const v = field.value;
  if (field.kind === "bool") return h("input", { id, type: "checkbox", checked: !!v });
  if (field.kind === "int" || field.kind === "float") {
    return h("input", { id, type: "number", step: field.kind === "int" ? "1" : "any", value: v ?? "" });
  }
  if (field.kind === "choice") {
    return h("select", { id, translate: "no" }, field.choices.map((c) => h("option", { value: String(c), selected: c === v }, String(c))));
  }
  if (field.kind === "list") return h("input", { id, value: (v || []).join(", ") });
  if (field.kind === "json") return h("textarea", { id, rows: 4, class: "mono", spellcheck: "false" }, JSON.stringify(v, null, 2));
  return h("input", { id, value: v ?? "" });
}

function read(field, el) {
  if (field.kind === "bool") return el.checked;
  if (field.kind === "int" || field.kind === "float") return el.value === "" ? null : Number(el.value);
  if (field.kind === "list") return el.value.split(",").map((s) => s.trim()).filter(Boolean);
  if (field.kind === "json") return JSON.parse(el.value);
  if (field.kind === "text" && el.value === "" && field.value === null) return null;
  return el.value;
}

export async function render(view) {
  if (!can("admin")) {
    view.append(h("h1", {}, t("Settings")), h("p", { class: "error", role: "alert", id: "not-allowed" }, t("This page needs the admin role.")));
    return null;
  }
  const form = await get("/config/schema");
  const inputs = [];
  const diff = h("pre", { class: "config", id: "config-diff", hidden: true, translate: "no" });
  const status = h("p", { role: "status", id: "config-status" });
  const error = h("p", { class: "error", role: "alert", id: "config-error" });
  const previewButton = h("button", { type: "button", id: "config-preview" }, t("Preview changes"));
  const applyButton = h("button", { type: "button", id: "config-apply", disabled: true }, t("Apply and restart"));
  const rollbackButton = h("button", { type: "button", class: "secondary", id: "config-rollback", disabled: !form.has_previous }, t("Roll back to the previous file"));
  let preview = null;

  view.append(
    h("h1", {}, t("Settings")),
    h("p", { class: "muted" }, form.file ? t("Editing {file}. Each change is checked before it is saved.", { file: form.file }) : t("The station runs on built-in defaults; start it with --config FILE to edit them here.")),
    h("div", { class: "toolbar" }, previewButton, applyButton, h("div", { class: "spacer" }), rollbackButton),
    error, status, diff,
  );
  for (const section of form.sections) {
    const box = h("fieldset", { class: "panel settings", id: `cfg-section-${section.name}` }, h("legend", { translate: "no" }, `[${section.name}]`),
      section.description ? h("p", { class: "muted", translate: "no" }, section.description) : null);
    for (const field of section.fields) {
      const el = input(field);
      inputs.push([field, el]);
      el.addEventListener("input", () => { applyButton.disabled = true; diff.hidden = true; });
      el.addEventListener("change", () => { applyButton.disabled = true; diff.hidden = true; });
      append(box, h("div", { class: "setting", dataset: { key: field.key } },
        h("label", { for: el.id, class: "mono" }, field.key), el,
        field.description ? h("small", { class: "muted", translate: "no" }, field.description) : null));
    }
    view.append(box);
  }
  if (!form.editable) previewButton.disabled = true;

  function changes() {
    const out = {};
    for (const [field, el] of inputs) {
      let value;
      try {
        value = read(field, el);
      } catch {
        throw new Error(t("{key}: not valid JSON", { key: field.key }));
      }
      if (JSON.stringify(value) !== JSON.stringify(field.value)) out[field.key] = value;
    }
    return out;
  }

  previewButton.addEventListener("click", async () => {
    error.textContent = "";
    status.textContent = "";
    try {
      const wanted = changes();
      if (!Object.keys(wanted).length) {
        status.textContent = t("Nothing has changed.");
        return;
      }
      preview = { changes: wanted, answer: await post("/config/preview", { changes: wanted }) };
      diff.textContent = preview.answer.diff;
      diff.hidden = false;
      status.textContent = t("Sections that change: {sections}", { sections: preview.answer.sections.join(", ") }) +
        (preview.answer.warnings.length ? ` · ${preview.answer.warnings.join(" · ")}` : "");
      applyButton.disabled = false;
    } catch (e) {
      error.textContent = e.message;
      if (e.field) document.querySelector(`[data-key="${CSS.escape(e.field)}"] input, [data-key="${CSS.escape(e.field)}"] select, [data-key="${CSS.escape(e.field)}"] textarea`)?.focus();
    }
  });
  applyButton.addEventListener("click", async () => {
    if (!preview) return;
    try {
      await post("/config/apply", { changes: preview.changes, base_sha256: preview.answer.base_sha256 });
      applyButton.disabled = previewButton.disabled = rollbackButton.disabled = true;
      await waitForRestart(status);
    } catch (e) {
      error.textContent = e.message;
    }
  });
  rollbackButton.addEventListener("click", async () => {
    try {
      const answer = await post("/config/rollback", {});
      diff.textContent = answer.diff;
      diff.hidden = false;
      applyButton.disabled = previewButton.disabled = rollbackButton.disabled = true;
      await waitForRestart(status);
    } catch (e) {
      toast(e.message, true);
    }
  });
  return null;
}

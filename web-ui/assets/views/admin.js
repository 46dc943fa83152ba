// Administration (admins only): users and roles, the audit log with its CSV, the configuration.

import { BASE, can, csrf, get, waitForRestart } from "../api.js";
import { append, clear, h, time, toast } from "../dom.js";
import { pager } from "./common.js";
import { N_, t } from "../login/i18n.js";

export async function render(view) {
  if (!can("admin")) {
    view.append(
      h("h1", {}, t("Admin")),
      h("p", { class: "error", role: "alert", id: "not-allowed" }, t("This page needs the admin role.")),
    );
    return null;
  }
  const users = h("section", { id: "users", "aria-labelledby": "users-h" });
  const auditBox = h("section", { id: "audit", "aria-labelledby": "audit-h" });
  const configBox = h("section", { id: "config", "aria-labelledby": "config-h" });
  const backupBox = h("section", { id: "backup", "aria-labelledby": "backup-h" });
  view.append(h("h1", {}, t("Admin")), users, auditBox, configBox, backupBox);
  const passphrase = h("input", { id: "backup-passphrase", type: "password", autocomplete: "new-password", minlength: 10 });
  const sealed = h("button", { type: "button", class: "secondary", id: "backup-sealed" }, t("Download an encrypted backup"));
  append(backupBox,
    h("h2", { id: "backup-h" }, t("Backup")),
    h("p", { class: "muted" }, t("The database, configuration, keys and images in one file; restore it with {command} with the station stopped.", { command: "scanstation restore FILE" })),
    h("div", { class: "toolbar" },
      h("a", { class: "button", id: "backup-download", href: `${BASE}/backup`, download: "" }, t("Download a backup")),
      h("div", { class: "field" }, h("label", { for: "backup-passphrase" }, t("Passphrase (at least 10 characters)")), passphrase),
      sealed));
  const file = h("input", { id: "restore-file", type: "file", accept: ".backup,application/octet-stream" });
  const restorePass = h("input", { id: "restore-passphrase", type: "password", autocomplete: "off" });
  const agree = h("input", { id: "restore-agree", type: "checkbox" });
  const restoreButton = h("button", { type: "button", class: "danger", id: "restore-start", disabled: true }, t("Restore and restart"));
  const restoreStatus = h("p", { role: "status", id: "restore-status" });
  const sync = () => { restoreButton.disabled = !(agree.checked && file.files.length); };
  agree.addEventListener("change", sync);
  file.addEventListener("change", sync);
  append(backupBox,
    h("h3", {}, t("Restore")),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "restore-file" }, t("Backup file")), file),
      h("div", { class: "field" }, h("label", { for: "restore-passphrase" }, t("Its passphrase, if it is encrypted")), restorePass)),
    h("p", {}, agree, " ", h("label", { for: "restore-agree" }, t("I understand that this replaces everything on the station: captures, catalog, users and keys."))),
    h("div", { class: "toolbar" }, restoreButton),
    restoreStatus);
  restoreButton.addEventListener("click", async () => {
    restoreButton.disabled = true;
    try {
      const headers = { "Content-Type": "application/octet-stream", "X-CSRF-Token": csrf() };
      if (restorePass.value) headers["X-Backup-Passphrase"] = restorePass.value;
      const resp = await fetch(`${BASE}/restore`, { method: "POST", credentials: "same-origin", headers, body: file.files[0] });
      const answer = await resp.json();
      if (!resp.ok) throw new Error(answer.error?.message || resp.statusText);
      await waitForRestart(restoreStatus);
    } catch (e) {
      toast(e.message, true);
      sync();
    }
  });
  sealed.addEventListener("click", async () => {
    sealed.disabled = true;
    try {
      const resp = await fetch(`${BASE}/backup`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({ passphrase: passphrase.value }),
      });
      if (!resp.ok) throw new Error((await resp.json()).error?.message || resp.statusText);
      const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "")?.[1] || "station.backup";
      const url = URL.createObjectURL(await resp.blob());
      const a = h("a", { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      passphrase.value = "";
    } catch (e) {
      toast(e.message, true);
    } finally {
      sealed.disabled = false;
    }
  });

  const list = await get("/users");
  append(users,
    h("h2", { id: "users-h" }, t("Users")),
    h("p", { class: "muted" }, t("Add, remove and change users on the station with {command}.", { command: "scanstation user" })),
    h("div", { class: "table-wrap" }, h("table", { class: "stacked" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("User")), h("th", { scope: "col" }, t("Role")), h("th", { scope: "col" }, t("Created")))),
      h("tbody", {}, list.results.map((u) =>
        h("tr", { dataset: { user: u.username } },
          h("td", { translate: "no" }, u.username), h("td", {}, t(u.role)), h("td", {}, u.first_admin ? t("first admin") : time(u.created))))))));

  const action = h("select", { id: "audit-action" },
    h("option", { value: "" }, t("All")),
    ["login", "user", "api-key", "catalog", "config", "backup", "restore"].map((a) => h("option", { value: a }, a)));
  const body = h("div");
  append(auditBox,
    h("h2", { id: "audit-h" }, t("Audit log")),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "audit-action" }, t("Action")), action),
      h("div", { class: "spacer" }),
      h("a", { class: "button secondary", id: "audit-csv", href: `${BASE}/audit.csv`, download: "" }, t("Export CSV"))),
    body);
  let offset = 0;
  async function load() {
    const query = new URLSearchParams({ limit: 50, offset });
    if (action.value) query.set("action", action.value);
    const page = await get(`/audit?${query}`);
    clear(body);
    if (!page.results.length) {
      body.append(h("p", { class: "empty" }, t("Nothing recorded yet.")));
      return;
    }
    append(body,
      h("div", { class: "table-wrap" }, h("table", { class: "stacked audit" },
        h("thead", {}, h("tr", {}, [N_("Time"), N_("Who"), N_("Action"), N_("Target"), N_("Outcome"), N_("From"), N_("Detail")].map((c) => h("th", { scope: "col" }, t(c))))),
        h("tbody", {}, page.results.map((e) => h("tr", { dataset: { action: e.action, outcome: e.outcome } },
          h("td", {}, time(e.time)), h("td", { translate: "no" }, e.actor), h("td", {}, e.action), h("td", {}, e.target),
          h("td", {}, t(e.outcome)), h("td", {}, e.remote), h("td", { class: "detail" }, JSON.stringify(e.detail))))))),
      pager({ count: page.count, offset, limit: 50 }, (o) => { offset = o; load(); }));
  }
  action.addEventListener("change", () => { offset = 0; load(); });
  await load();

  append(configBox,
    h("h2", { id: "config-h" }, t("Configuration")),
    h("p", {}, h("a", { href: "#/settings", id: "settings-link" }, t("Change the configuration (each key with its documentation, a diff before it is applied, a rollback)"))));
  return null;
}

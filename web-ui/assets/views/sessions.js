// Sessions list: status, mode, counts; open one to review it.

import { get, post } from "../api.js";
import { append, badge, clear, h, time, toast } from "../dom.js";
import { pager } from "./common.js";
import { number, t } from "../login/i18n.js";

const LIMIT = 25;

export async function render(view, { on }) {
  const status = h(
    "select",
    { id: "session-status" },
    h("option", { value: "" }, t("All")),
    ["ACTIVE", "COMPLETED", "EXPIRED"].map((s) => h("option", { value: s }, t(s))),
  );
  const body = h("div");
  const newButton = h("button", { type: "button", dataset: { needs: "operator" } }, t("New session"));
  view.append(
    h("h1", {}, t("Sessions")),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "session-status" }, t("Status")), status),
      h("div", { class: "spacer" }),
      newButton,
    ),
    body,
  );
  let offset = 0;

  async function load() {
    const q = new URLSearchParams({ limit: LIMIT, offset });
    if (status.value) q.set("status", status.value);
    const page = await get(`/sessions?${q}`);
    clear(body);
    if (!page.results.length) {
      append(body, h("p", { class: "empty" }, t("No sessions.")));
      return;
    }
    const rows = page.results.map((s) =>
      h(
        "tr",
        { class: "clickable", onclick: () => (location.hash = `#/sessions/${s.public_id}`) },
        h("td", {}, h("a", { href: `#/sessions/${s.public_id}` }, time(s.created))),
        h("td", {}, badge(s.status)),
        h("td", { class: "hide-narrow" }, t(s.capture_mode)),
        h("td", { class: "hide-narrow" }, s.source || "–"),
        h("td", { class: "num" }, number(s.capture_count)),
        h("td", { class: "num" }, number(s.photo_count)),
      ),
    );
    append(body, 
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "visually-hidden" }, t("Sessions, newest first")),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, t("Started")),
              h("th", { scope: "col" }, t("Status")),
              h("th", { scope: "col", class: "hide-narrow" }, t("Mode")),
              h("th", { scope: "col", class: "hide-narrow" }, t("Source")),
              h("th", { scope: "col", class: "num" }, t("Captures")),
              h("th", { scope: "col", class: "num" }, t("Photos")),
            ),
          ),
          h("tbody", {}, rows),
        ),
      ),
      pager({ ...page, offset, limit: LIMIT }, (o) => {
        offset = o;
        load();
      }),
    );
  }

  status.addEventListener("change", () => {
    offset = 0;
    load();
  });
  newButton.addEventListener("click", async () => {
    try {
      const s = await post("/sessions", { capture_mode: "both", source: "ui" });
      location.hash = `#/sessions/${s.public_id}`;
    } catch (e) {
      toast(e.message, true);
    }
  });
  await load();
  let pending = null;
  const off = on("session", () => {
    clearTimeout(pending);
    pending = setTimeout(load, 500);
  });
  return { cleanup: () => { off(); clearTimeout(pending); } };
}

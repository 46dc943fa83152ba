// Sessions list: status, mode, counts; open one to review it.

import { get, post } from "../api.js";
import { append, badge, clear, h, time, toast } from "../dom.js";
import { pager } from "./common.js";

const LIMIT = 25;

export async function render(view, { on }) {
  const status = h(
    "select",
    { id: "session-status" },
    h("option", { value: "" }, "All"),
    ["ACTIVE", "COMPLETED", "EXPIRED"].map((s) => h("option", { value: s }, s.toLowerCase())),
  );
  const body = h("div");
  const newButton = h("button", { type: "button", dataset: { needs: "operator" } }, "New session");
  view.append(
    h("h1", {}, "Sessions"),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "session-status" }, "Status"), status),
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
      append(body, h("p", { class: "empty" }, "No sessions."));
      return;
    }
    const rows = page.results.map((s) =>
      h(
        "tr",
        { class: "clickable", onclick: () => (location.hash = `#/sessions/${s.public_id}`) },
        h("td", {}, h("a", { href: `#/sessions/${s.public_id}` }, time(s.created))),
        h("td", {}, badge(s.status)),
        h("td", { class: "hide-narrow" }, s.capture_mode.replace("_", " ")),
        h("td", { class: "hide-narrow" }, s.source || "–"),
        h("td", { class: "num" }, s.capture_count),
        h("td", { class: "num" }, s.photo_count),
      ),
    );
    append(body, 
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "visually-hidden" }, "Sessions, newest first"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Started"),
              h("th", { scope: "col" }, "Status"),
              h("th", { scope: "col", class: "hide-narrow" }, "Mode"),
              h("th", { scope: "col", class: "hide-narrow" }, "Source"),
              h("th", { scope: "col", class: "num" }, "Captures"),
              h("th", { scope: "col", class: "num" }, "Photos"),
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

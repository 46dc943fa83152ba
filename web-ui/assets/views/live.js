// Live feed: the newest captures, updated as the station reads codes.

import { get, post } from "../api.js";
import { announce, clear, h, toast } from "../dom.js";
import { captureRow, captureTitle } from "./common.js";
import { t } from "../login/i18n.js";

const SHOWN = 40;

export async function render(view, { on }) {
  const list = h("ul", { class: "feed", id: "feed", "aria-label": t("Captures, newest first") });
  const empty = h("p", { class: "empty" }, t("No captures yet. Scan a code, or type one below."));
  const input = h("input", { id: "manual-code", name: "code", autocomplete: "off", placeholder: t("e.g. {example}", { example: "09506000134352" }), maxlength: 500 });
  const form = h(
    "form",
    { class: "toolbar", "aria-label": t("Manual entry"), dataset: { needs: "operator" } },
    h("div", { class: "field" }, h("label", { for: "manual-code" }, t("Enter a code by hand")), input),
    h("button", { type: "submit" }, t("Add")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    try {
      const session = await activeSession();
      await post("/captures", { session_public_id: session, raw_value: value, capture_type: "MANUAL", source: "ui" });
      input.value = "";
    } catch (e) {
      toast(e.message, true);
    }
  });
  view.append(h("h1", {}, t("Live feed")), form, empty, list);

  const page = await get(`/captures?limit=${SHOWN}`);
  for (const c of page.results) list.append(captureRow(c));
  empty.hidden = page.results.length > 0;

  const offCapture = on("capture", (c) => {
    const row = captureRow(c);
    row.classList.add("fresh");
    const old = list.querySelector(`[data-id="${CSS.escape(c.public_id)}"]`);
    if (old) old.replaceWith(row);
    else list.prepend(row);
    while (list.children.length > SHOWN) list.lastElementChild.remove();
    empty.hidden = true;
    if (["COMPLETED", "NOT_FOUND", "FAILED"].includes(c.status)) {
      announce(`${captureTitle(c)}: ${t(c.status)}`);
    }
  });
  const offDropped = on("dropped", async () => {
    const fresh = await get(`/captures?limit=${SHOWN}`);
    clear(list);
    for (const c of fresh.results) list.append(captureRow(c));
  });
  return { cleanup: () => { offCapture(); offDropped(); } };
}

async function activeSession() {
  const page = await get("/sessions?status=ACTIVE&limit=1");
  if (page.results.length) return page.results[0].public_id;
  const created = await post("/sessions", { capture_mode: "both", source: "ui" });
  return created.public_id;
}

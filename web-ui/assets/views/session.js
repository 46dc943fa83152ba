// Session review: its captures with status, product, GS1 fields, checks and thumbnails.

import { get, post } from "../api.js";
import { append, badge, clear, h, printable, time, toast } from "../dom.js";
import { captureTitle, checkBadges, pager, thumb } from "./common.js";
import { aiName, gs1Order } from "./gs1.js";
import { number, t } from "../login/i18n.js";

const LIMIT = 50;

function gs1Cell(data) {
  const entries = gs1Order(data);
  if (!entries.length) return "–";
  return h("ul", { class: "ais" }, entries.map(([ai, v]) => h("li", { title: aiName(ai) }, h("span", { class: "muted" }, `(${ai})`), " ", h("span", { class: "mono" }, v))));
}

export async function render(view, { on, params }) {
  const [id] = params;
  const head = h("div");
  const body = h("div");
  view.append(head, body);
  let offset = 0;

  async function loadHead() {
    const [s, st] = await Promise.all([get(`/sessions/${id}`), get(`/sessions/${id}/status`)]);
    clear(head);
    const end = s.status === "ACTIVE"
      ? h("button", {
          type: "button",
          class: "secondary",
          dataset: { needs: "operator" },
          onclick: async () => {
            try {
              await post(`/sessions/${id}/end`);
              loadHead();
            } catch (e) {
              toast(e.message, true);
            }
          },
        }, t("End session"))
      : null;
    append(head, 
      h("h1", {}, t("Session {time}", { time: time(s.created) })),
      h(
        "div",
        { class: "toolbar" },
        badge(s.status),
        h("span", { class: "muted" }, `${t("{n} captures", { n: number(s.capture_count) })} · ${t("{n} photos", { n: number(s.photo_count) })} · ${t(s.capture_mode)}${s.source ? ` · ${s.source}` : ""}`),
        st.in_progress ? h("span", { class: "muted" }, ` · ${t("{n} in progress", { n: number(st.in_progress) })}`) : null,
        h("div", { class: "spacer" }),
        end,
      ),
    );
  }

  async function loadCaptures() {
    const page = await get(`/captures?session=${encodeURIComponent(id)}&limit=${LIMIT}&offset=${offset}`);
    clear(body);
    if (!page.results.length) {
      append(body, h("p", { class: "empty" }, t("No captures in this session yet.")));
      return;
    }
    const rows = page.results.map((c) =>
      h(
        "tr",
        { dataset: { id: c.public_id } },
        h("td", {}, thumb(c)),
        h(
          "td",
          {},
          h("a", { href: `#/captures/${c.public_id}` }, captureTitle(c)),
          h("div", { class: "muted mono" }, printable(c.raw_value)),
          h("div", { class: "show-narrow" }, badge(c.status), " ", checkBadges(c.checks)),
          c.qr_analysis ? h("div", { class: "muted" }, t("QR: {n} hops → {resolver}", { n: c.qr_analysis.hop_count ?? 0, resolver: c.qr_analysis.resolver_type || "?" })) : null,
        ),
        h("td", { class: "hide-phone" }, badge(c.status), " ", checkBadges(c.checks), c.error_message ? h("div", { class: "error" }, c.error_message) : null),
        h("td", { class: "hide-narrow" }, gs1Cell(c.gs1_dl_data)),
        h("td", { class: "hide-narrow nowrap" }, time(c.created)),
      ),
    );
    append(body, 
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "visually-hidden" }, t("Captures of this session")),
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, t("Image"))),
            h("th", { scope: "col" }, t("Product / value")),
            h("th", { scope: "col", class: "hide-phone" }, t("Status")),
            h("th", { scope: "col", class: "hide-narrow" }, t("GS1 fields")),
            h("th", { scope: "col", class: "hide-narrow" }, t("Time")))),
          h("tbody", {}, rows),
        ),
      ),
      pager({ ...page, offset, limit: LIMIT }, (o) => {
        offset = o;
        loadCaptures();
      }),
    );
  }

  await Promise.all([loadHead(), loadCaptures()]);
  let pending = null;
  const refresh = (data) => {
    if (data.session_public_id && data.session_public_id !== id) return;
    if (data.public_id && !data.session_public_id && data.public_id !== id) return;
    clearTimeout(pending);
    pending = setTimeout(() => Promise.all([loadHead(), loadCaptures()]), 400);
  };
  const off1 = on("capture", refresh);
  const off2 = on("session", refresh);
  return { cleanup: () => { off1(); off2(); clearTimeout(pending); } };
}

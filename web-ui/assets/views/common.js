// Pieces several views share: the capture row and the capture image.

import { BASE } from "../api.js";
import { badge, h, printable, time } from "../dom.js";
import { N_, number, t } from "../login/i18n.js";

// Values the API sends that the UI shows as words (statuses, modes, checks, states).
export const SHOWN_VALUES = [
  N_("ACTIVE"), N_("COMPLETED"), N_("EXPIRED"), N_("PENDING"), N_("LOOKING_UP"), N_("ENRICHING"), N_("RESOLVING"),
  N_("NOT_FOUND"), N_("FAILED"), N_("ACCEPTED"), N_("REJECTED"), N_("BARCODE"), N_("IMAGE"), N_("MANUAL"),
  N_("barcode_scan"), N_("product_photography"), N_("both"), N_("starting"), N_("running"), N_("stopped"),
  N_("error"), N_("connected"), N_("disconnected"), N_("connecting"), N_("unknown"), N_("expired"), N_("recalled"),
  N_("expiry"), N_("not_for_sale"), N_("viewer"), N_("operator"), N_("admin"), N_("ok"), N_("refused"),
];

export function thumb(capture, width = 128) {
  if (!capture.uploaded_image_key) {
    return h("div", { class: "thumb", "aria-hidden": "true" }, capture.capture_type === "BARCODE" ? "▥" : "–");
  }
  return h("img", {
    class: "thumb",
    src: `${BASE}/captures/${capture.public_id}/image?width=${width}`,
    alt: t("Photo of capture {id}", { id: capture.raw_value || capture.public_id }),
    loading: "lazy",
    width: 64,
    height: 64,
  });
}

export function captureTitle(c) {
  return c.product_name || printable(c.raw_value) || c.gtin || t("(image)");
}

export function checkBadges(checks) {
  const out = [];
  for (const [name, value] of Object.entries(checks || {})) {
    if (value === true) out.push(badge(name, "alert"));
  }
  return out;
}

export function captureRow(c) {
  const meta = [
    c.gtin ? `${t("GTIN")} ${c.gtin}` : null,
    c.symbology || null,
    c.source ? t("from {source}", { source: c.source }) : null,
    time(c.created),
  ].filter(Boolean);
  return h(
    "li",
    { class: `capture ${c.status}`, dataset: { id: c.public_id, status: c.status } },
    thumb(c),
    h(
      "a",
      { class: "open main", href: `#/captures/${c.public_id}` },
      h("div", { class: "title" }, captureTitle(c)),
      h("div", { class: "meta mono" }, c.product_name ? printable(c.raw_value) : ""),
      h("div", { class: "meta" }, meta.join(" · ")),
      c.error_message ? h("div", { class: "meta error" }, c.error_message) : null,
    ),
    h("div", { class: "side" }, badge(c.status), checkBadges(c.checks)),
  );
}

export function pager(page, onMove) {
  const { count, offset, limit } = page;
  if (count <= limit) return null;
  const from = count === 0 ? 0 : offset + 1;
  const to = Math.min(count, offset + limit);
  return h(
    "div",
    { class: "pager" },
    h("span", { class: "muted" }, t("{from}–{to} of {count}", { from: number(from), to: number(to), count: number(count) })),
    h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => onMove(Math.max(0, offset - limit)) }, t("‹ Newer")),
    h("button", { type: "button", class: "secondary", disabled: to >= count, onclick: () => onMove(offset + limit) }, t("Older ›")),
  );
}

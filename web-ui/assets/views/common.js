// Pieces several views share: the capture row and the capture image.

import { BASE } from "../api.js";
import { badge, h, printable, time } from "../dom.js";

export function thumb(capture, width = 128) {
  if (!capture.uploaded_image_key) {
    return h("div", { class: "thumb", "aria-hidden": "true" }, capture.capture_type === "BARCODE" ? "▥" : "–");
  }
  return h("img", {
    class: "thumb",
    src: `${BASE}/captures/${capture.public_id}/image?width=${width}`,
    alt: `Photo of capture ${capture.raw_value || capture.public_id}`,
    loading: "lazy",
    width: 64,
    height: 64,
  });
}

export function captureTitle(c) {
  return c.product_name || printable(c.raw_value) || c.gtin || "(image)";
}

export function checkBadges(checks) {
  const out = [];
  for (const [name, value] of Object.entries(checks || {})) {
    if (value === true) out.push(badge(name.replaceAll("_", " "), "alert"));
  }
  return out;
}

export function captureRow(c) {
  const meta = [
    c.gtin ? `GTIN ${c.gtin}` : null,
    c.symbology || null,
    c.source ? `from ${c.source}` : null,
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
    h("span", { class: "muted" }, `${from}–${to} of ${count}`),
    h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => onMove(Math.max(0, offset - limit)) }, "‹ Newer"),
    h("button", { type: "button", class: "secondary", disabled: to >= count, onclick: () => onMove(offset + limit) }, "Older ›"),
  );
}

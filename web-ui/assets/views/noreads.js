// The no-read image ring (GET /noreads): what the camera saw when it read nothing, newest
// first, each frame viewable full size and downloadable. Its own markup, no styles.

import { BASE, get } from "../api.js";
import { h, time } from "../dom.js";
import { number, t } from "../login/i18n.js";

export async function render(view) {
  const ring = await get("/noreads");
  view.append(h("h1", {}, t("No-read images")));
  if (!ring.enabled) {
    view.append(h("p", { class: "empty" }, t("The no-read ring is off ([noread_images] enabled = false).")));
    return null;
  }
  view.append(h("p", { class: "muted", id: "noreads-summary" },
    t("{count} frames, {mb} MB kept", { count: number(ring.count), mb: number(ring.bytes / 1048576, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) })));
  if (!ring.results.length) {
    view.append(h("p", { class: "empty" }, t("No no-read frames kept yet.")));
    return null;
  }
  view.append(h("ul", { id: "noreads", class: "cards" }, ring.results.map((e) => {
    const url = `${BASE}/noreads/${encodeURIComponent(e.name)}`;
    return h("li", { class: "card", dataset: { name: e.name } },
      h("a", { href: url, target: "_blank", rel: "noopener" },
        h("img", { src: url, alt: t("No-read frame from {source} at {time}", { source: e.source, time: time(e.time) }), loading: "lazy", width: 240 })),
      h("div", {}, `${e.source} · ${time(e.time)}`),
      h("a", { href: `#/captures/${e.capture_public_id}` }, t("Capture")), " · ",
      h("a", { href: `${url}?download=1`, download: e.name }, t("Download")));
  })));
  return null;
}

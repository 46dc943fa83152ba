// The no-read image ring (GET /noreads): what the camera saw when it read nothing, newest
// first, each frame viewable full size and downloadable. Its own markup, no styles.

import { BASE, get } from "../api.js";
import { h, time } from "../dom.js";

export async function render(view) {
  const ring = await get("/noreads");
  view.append(h("h1", {}, "No-read images"));
  if (!ring.enabled) {
    view.append(h("p", { class: "empty" }, "The no-read ring is off ([noread_images] enabled = false)."));
    return null;
  }
  view.append(h("p", { class: "muted", id: "noreads-summary" },
    `${ring.count} frames, ${(ring.bytes / 1048576).toFixed(1)} MB kept`));
  if (!ring.results.length) {
    view.append(h("p", { class: "empty" }, "No no-read frames kept yet."));
    return null;
  }
  view.append(h("ul", { id: "noreads", class: "cards" }, ring.results.map((e) => {
    const url = `${BASE}/noreads/${encodeURIComponent(e.name)}`;
    return h("li", { class: "card", dataset: { name: e.name } },
      h("a", { href: url, target: "_blank", rel: "noopener" },
        h("img", { src: url, alt: `No-read frame from ${e.source} at ${time(e.time)}`, loading: "lazy", width: 240 })),
      h("div", {}, `${e.source} · ${time(e.time)}`),
      h("a", { href: `#/captures/${e.capture_public_id}` }, "Capture"), " · ",
      h("a", { href: `${url}?download=1`, download: e.name }, "Download"));
  })));
  return null;
}

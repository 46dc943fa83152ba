// Camera preview for aiming and focus: the MJPEG stream (or snapshots) and a sharpness figure.

import { BASE, get } from "../api.js";
import { clear, h } from "../dom.js";
import { number, t } from "../login/i18n.js";

// Variance of the Laplacian of a grey downscaled frame: higher is sharper (compare while turning the lens).
function sharpness(img, canvas) {
  const w = (canvas.width = 160);
  const hgt = (canvas.height = Math.max(1, Math.round((img.naturalHeight / img.naturalWidth) * 160)));
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0, w, hgt);
  const { data } = ctx.getImageData(0, 0, w, hgt);
  const grey = new Float32Array(w * hgt);
  for (let i = 0; i < w * hgt; i++) grey[i] = 0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2];
  let sum = 0, sum2 = 0, n = 0;
  for (let y = 1; y < hgt - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      const lap = grey[i - 1] + grey[i + 1] + grey[i - w] + grey[i + w] - 4 * grey[i];
      sum += lap; sum2 += lap * lap; n++;
    }
  }
  return n ? sum2 / n - (sum / n) ** 2 : 0;
}

export async function render(view) {
  const stats = await get("/stats");
  const cameras = stats.sources.filter((s) => s.preview);
  view.append(h("h1", {}, t("Camera preview")));
  if (!cameras.length) {
    view.append(h("p", { class: "empty" }, stats.sources.length
      ? t("None of the configured sources offers a preview (only cameras do).")
      : t("No sources are configured.")));
    return null;
  }
  const select = h("select", { id: "camera-source" }, cameras.map((c) => h("option", { value: c.name }, `${c.name} (${t(c.state)})`)));
  const mode = h("select", { id: "camera-mode" },
    h("option", { value: "frames" }, t("Live (frames, about 5 a second)")),
    h("option", { value: "stream" }, t("MJPEG stream")),
    h("option", { value: "slow" }, t("Slow link (a frame every 2 s)")));
  const focus = h("output", { id: "focus", "aria-live": "off" }, "–");
  const img = h("img", { alt: t("Camera preview"), id: "camera-img" });
  const holder = h("div", { class: "camera-view" }, img, h("div", { class: "crosshair", "aria-hidden": "true" }));
  const canvas = h("canvas", { hidden: true });
  view.append(
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "camera-source" }, t("Camera")), select),
      h("div", { class: "field" }, h("label", { for: "camera-mode" }, t("Mode")), mode),
      h("div", { class: "field" }, h("label", { for: "focus" }, t("Sharpness")), focus)),
    holder,
    canvas,
    h("p", { class: "hint" }, t("Turn the focus ring until the sharpness figure peaks; centre the code on the cross.")),
  );
  let run = 0; // bumped on every change: an older frame loop sees it and stops
  let focusTimer = null;
  let objectUrl = null;

  // Fetch one snapshot after another (never more than one in flight), shown through a blob URL.
  async function frames(myRun, name, pauseMs) {
    while (myRun === run) {
      const started = performance.now();
      try {
        const resp = await fetch(`${BASE}/sources/${name}/snapshot.jpg`, { credentials: "same-origin", cache: "no-store" });
        if (myRun !== run) return;
        if (resp.ok) {
          const url = URL.createObjectURL(await resp.blob());
          img.src = url;
          if (objectUrl) URL.revokeObjectURL(objectUrl);
          objectUrl = url;
        } else {
          focus.textContent = resp.status === 409 ? t("no frame yet") : t("error {status}", { status: resp.status });
        }
      } catch {
        focus.textContent = t("offline");
      }
      await new Promise((r) => setTimeout(r, Math.max(0, pauseMs - (performance.now() - started))));
    }
  }

  function start() {
    run += 1;
    const name = encodeURIComponent(select.value);
    if (mode.value === "stream") {
      img.src = `${BASE}/sources/${name}/stream.mjpg?fps=10`;
    } else {
      frames(run, name, mode.value === "slow" ? 2000 : 200);
    }
  }
  focusTimer = setInterval(() => {
    if (img.complete && img.naturalWidth) {
      try {
        focus.textContent = number(Math.round(sharpness(img, canvas)));
      } catch {
        focus.textContent = "–";
      }
    }
  }, 1000);
  img.addEventListener("error", () => { focus.textContent = t("no frame"); });
  select.addEventListener("change", start);
  mode.addEventListener("change", start);
  start();
  return {
    cleanup: () => {
      run += 1;
      clearInterval(focusTimer);
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      img.removeAttribute("src"); // closes the MJPEG connection
      clear(holder);
    },
  };
}

// The dashboard's read-rate block: windows by result per source, the rate of the last 100,
// and the quality trend with its alarm (GET /stats -> read_rate). Its own markup, no styles.

import { h } from "../dom.js";

const RESULTS = ["good", "noread", "multiple", "rejected"];

// The read rate of the current hour, with its window count ("–" when none this hour).
function thisHour(perHour) {
  const last = perHour[perHour.length - 1];
  if (!last || last.hour * 1000 + 3600000 <= Date.now()) return "–";
  const windows = RESULTS.reduce((n, r) => n + last[r], 0);
  return `${(100 * last.rate).toFixed(1)} % of ${windows}`;
}

export function readRatePanel(readRate) {
  const sources = Object.entries(readRate || {});
  return h("section", { class: "panel", id: "read-rate", "aria-labelledby": "h-read-rate" },
    h("h2", { id: "h-read-rate" }, "Read rate"),
    sources.length
      ? h("table", {},
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Source"),
            h("th", { scope: "col", class: "num" }, "Last 100"),
            h("th", { scope: "col", class: "num" }, "This hour"),
            ...RESULTS.map((r) => h("th", { scope: "col", class: "num" }, r)),
            h("th", { scope: "col", class: "num" }, "Quality"),
            h("th", { scope: "col" }, "Last result"))),
          h("tbody", {}, sources.map(([name, r]) => h("tr", { dataset: { source: name } },
            h("td", {}, name),
            h("td", { class: "num", dataset: { field: "rate" } }, `${(100 * r.rate_100).toFixed(1)} %`),
            h("td", { class: "num", dataset: { field: "hour" } }, thisHour(r.per_hour)),
            ...RESULTS.map((res) => h("td", { class: "num", dataset: { field: res } }, r.totals[res])),
            h("td", { class: "num", dataset: { field: "quality" } },
              r.quality.score === null ? "–" : Math.round(r.quality.score),
              r.quality.alarm ? h("div", { class: "error", role: "alert" }, `below ${r.quality.threshold}`) : null),
            h("td", { class: "mono" }, r.last_result)))))
      : h("p", { class: "muted" }, "No read windows yet."),
    h("p", {}, h("a", { href: "#/noreads", id: "noreads-link" }, "No-read images")));
}

// The dashboard's read-rate block: windows by result per source, the rate of the last 100,
// and the quality trend with its alarm (GET /stats -> read_rate). Its own markup, no styles.

import { h } from "../dom.js";
import { N_, number, t } from "../login/i18n.js";

const RESULTS = ["good", "noread", "multiple", "rejected"];
const RESULT_LABELS = { good: N_("good"), noread: N_("noread"), multiple: N_("multiple"), rejected: N_("rejected") };
const pct = (fraction) => `${number(100 * fraction, { minimumFractionDigits: 1, maximumFractionDigits: 1 })} %`;

// The read rate of the current hour, with its window count ("–" when none this hour).
function thisHour(perHour) {
  const last = perHour[perHour.length - 1];
  if (!last || last.hour * 1000 + 3600000 <= Date.now()) return "–";
  const windows = RESULTS.reduce((n, r) => n + last[r], 0);
  return t("{rate} of {windows}", { rate: pct(last.rate), windows: number(windows) });
}

export function readRatePanel(readRate) {
  const sources = Object.entries(readRate || {});
  return h("section", { class: "panel", id: "read-rate", "aria-labelledby": "h-read-rate" },
    h("h2", { id: "h-read-rate" }, t("Read rate")),
    sources.length
      ? h("table", {},
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, t("Source")),
            h("th", { scope: "col", class: "num" }, t("Last 100")),
            h("th", { scope: "col", class: "num" }, t("This hour")),
            ...RESULTS.map((r) => h("th", { scope: "col", class: "num" }, t(RESULT_LABELS[r]))),
            h("th", { scope: "col", class: "num" }, t("Quality")),
            h("th", { scope: "col" }, t("Last result")))),
          h("tbody", {}, sources.map(([name, r]) => h("tr", { dataset: { source: name } },
            h("td", {}, name),
            h("td", { class: "num", dataset: { field: "rate" } }, pct(r.rate_100)),
            h("td", { class: "num", dataset: { field: "hour" } }, thisHour(r.per_hour)),
            ...RESULTS.map((res) => h("td", { class: "num", dataset: { field: res } }, number(r.totals[res]))),
            h("td", { class: "num", dataset: { field: "quality" } },
              r.quality.score === null ? "–" : Math.round(r.quality.score),
              r.quality.alarm ? h("div", { class: "error", role: "alert" }, t("below {threshold}", { threshold: number(r.quality.threshold) })) : null),
            h("td", { class: "mono" }, r.last_result)))))
      : h("p", { class: "muted" }, t("No read windows yet.")),
    h("p", {}, h("a", { href: "#/noreads", id: "noreads-link" }, t("No-read images"))));
}

// Dashboard: today's scans, status mix, top products, completeness, MQTT/outbox, sources, chart.

import { BASE, get } from "../api.js";
import { append, ago, badge, clear, duration, h, meter } from "../dom.js";
import { dateTime, number, t } from "../login/i18n.js";
import { readRatePanel } from "./readrate.js";

const hourLabel = (iso) => dateTime(new Date(iso), { hour: "2-digit", minute: "2-digit" });

const REFRESH_MS = 15000;

function card(label, value, sub, id) {
  return h("div", { class: "card", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

// Bars of captures per hour over the last 24 hours, drawn as inline SVG (no chart library).
export function hourlyChart(perHour) {
  const W = 480, H = 160, left = 28, bottom = 18, top = 8;
  const max = Math.max(1, ...perHour.map((p) => p.captures));
  const step = (W - left) / perHour.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc", preserveAspectRatio: "none" },
    h("svg:title", { id: "chart-title" }, t("Captures per hour, last 24 hours")),
    h("svg:desc", { id: "chart-desc" }, perHour.map((p) => `${hourLabel(p.hour)} ${number(p.captures)}`).join(", ")));
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    svg.append(h("svg:line", { class: "axis", x1: left, x2: W, y1: y(v), y2: y(v) }),
      h("svg:text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" }, number(v)));
  }
  perHour.forEach((p, i) => {
    const x = left + i * step + 1;
    const bar = h("svg:rect", { class: "bar", x, y: y(p.captures), width: Math.max(1, step - 2), height: H - bottom - y(p.captures) });
    bar.append(h("svg:title", {}, `${hourLabel(p.hour)} — ${t("{n} captures", { n: number(p.captures) })}`));
    svg.append(bar);
    if (i % 3 === 0) {
      svg.append(h("svg:text", { x: x + step / 2, y: H - 4, "text-anchor": "middle" }, dateTime(new Date(p.hour), { hour: "numeric" })));
    }
  });
  return h("div", { class: "chart" }, svg);
}

// A product by name; a GTIN the catalog lacks (or names nothing for) says so.
function topProduct(p) {
  if (p.name) return p.name;
  const gtin = h("span", { class: "mono" }, p.gtin);
  if (p.in_catalog === false) {
    return [gtin, " ", h("span", { class: "badge NOT_FOUND", title: t("Scanned, but not in the local catalog") }, t("not in catalog"))];
  }
  return [gtin, " ", h("span", { class: "muted" }, t("(no name in the catalog)"))];
}

function statusStack(byStatus) {
  const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
  const stack = h("div", { class: "stack", role: "img", "aria-label": Object.entries(byStatus).map(([k, v]) => `${t(k)} ${number(v)}`).join(", ") || t("no captures") });
  const legend = h("div", { class: "legend" });
  for (const [status, n] of Object.entries(byStatus)) {
    const cls = ["COMPLETED", "NOT_FOUND", "FAILED"].includes(status) ? status : "other";
    const part = h("span", { class: `s-${cls}` });
    part.style.width = `${(100 * n) / Math.max(1, total)}%`;
    stack.append(part);
    legend.append(h("span", {}, h("span", { class: `swatch s-${cls}` }), `${t(status)} ${number(n)}`));
  }
  return [stack, legend];
}

export async function render(view, { on }) {
  const body = h("div");
  view.append(
    h("h1", {}, t("Dashboard")),
    h("div", { class: "toolbar" },
      h("span", { class: "muted", id: "stats-time" }),
      h("div", { class: "spacer" }),
      h("a", { class: "button secondary", href: `${BASE}/exports/scans.csv`, download: "" }, t("Export scans CSV")),
      h("a", { class: "button secondary", href: `${BASE}/exports/products.csv`, download: "" }, t("Export products CSV"))),
    body,
  );

  async function load() {
    const s = await get("/stats");
    clear(body);
    const mqtt = s.mqtt || {};
    append(body, 
      h("div", { class: "cards" },
        card(t("Scans today"), number(s.scans_today), t("{n} in all", { n: number(s.captures_total) }), "card-today"),
        card(t("Not found today"), number(s.today_by_status.NOT_FOUND || 0), t("{n} failed", { n: number(s.today_by_status.FAILED || 0) })),
        card(t("Active sessions"), number(s.sessions_active)),
        card(t("Proposals to review"), number(s.proposals_pending)),
        card(t("Outbox"), number(s.outbox.depth), s.outbox.depth ? t("oldest {age}", { age: duration(s.outbox.oldest_age_s) }) : t("empty"), "card-outbox"),
        card(t("MQTT"), badge(mqtt.state || "unknown"), mqtt.detail || (mqtt.broker ? mqtt.broker : ""), "card-mqtt")),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "h-chart" }, h("h2", { id: "h-chart" }, t("Captures per hour")), hourlyChart(s.per_hour)),
        h("section", { class: "panel", "aria-labelledby": "h-status" }, h("h2", { id: "h-status" }, t("Today by status")), statusStack(s.today_by_status),
          h("h3", {}, t("Catalog completeness")),
          s.products_total
            ? [meter(Math.round(s.completeness_average)), h("p", { class: "muted" }, `${t("{n} products", { n: number(s.products_total) })}; ` +
                ["0-24", "25-49", "50-74", "75-99", "100"].map((band) => `${band} %: ${number(s.completeness_buckets[band] ?? 0)}`).join(" · "))]
            : h("p", { class: "muted" }, t("No products in the catalog.")))),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "h-top" }, h("h2", { id: "h-top" }, t("Top products (7 days)")),
          s.top_products.length
            ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("Product")), h("th", { scope: "col", class: "num" }, t("Scans")))),
                h("tbody", {}, s.top_products.map((p) => h("tr", {}, h("td", {}, topProduct(p)), h("td", { class: "num" }, number(p.scans))))))
            : h("p", { class: "muted" }, t("No product scans yet."))),
        h("section", { class: "panel", "aria-labelledby": "h-src" }, h("h2", { id: "h-src" }, t("Sources")),
          s.sources.length
            ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("Source")), h("th", { scope: "col" }, t("State")), h("th", { scope: "col", class: "num" }, t("Scans")), h("th", { scope: "col", class: "hide-narrow" }, t("Last read")))),
                h("tbody", {}, s.sources.map((src) => h("tr", {},
                  h("td", {}, `${src.name} `, h("span", { class: "muted" }, src.kind)),
                  h("td", {}, badge(src.state), src.detail ? h("div", { class: "muted" }, src.detail) : null),
                  h("td", { class: "num" }, number(src.scans), src.errors ? h("div", { class: "error" }, t("{n} errors", { n: number(src.errors) })) : null),
                  h("td", { class: "hide-narrow" }, ago(src.last_scan_at))))))
            : h("p", { class: "muted" }, t("No sources configured.")))),
      readRatePanel(s.read_rate),
    );
    document.getElementById("stats-time").textContent = `${s.device_id}${s.site ? ` · ${s.site}` : ""} · ${t("version {v}", { v: s.version })} · ${t("updated {time}", { time: dateTime(new Date(s.time), { timeStyle: "medium" }) })}`;
  }

  await load();
  const timer = setInterval(load, REFRESH_MS);
  let pending = null;
  const off = on("capture", () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 2000);
  });
  return { cleanup: () => { clearInterval(timer); clearTimeout(pending); off(); } };
}

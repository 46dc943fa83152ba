// Dashboard: today's scans, status mix, top products, completeness, MQTT/outbox, sources, chart.

import { BASE, get } from "../api.js";
import { append, ago, badge, clear, duration, h, meter } from "../dom.js";
import { readRatePanel } from "./readrate.js";

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
    h("svg:title", { id: "chart-title" }, "Captures per hour, last 24 hours"),
    h("svg:desc", { id: "chart-desc" }, perHour.map((p) => `${new Date(p.hour).getHours()}:00 ${p.captures}`).join(", ")));
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    svg.append(h("svg:line", { class: "axis", x1: left, x2: W, y1: y(v), y2: y(v) }),
      h("svg:text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" }, v));
  }
  perHour.forEach((p, i) => {
    const x = left + i * step + 1;
    const bar = h("svg:rect", { class: "bar", x, y: y(p.captures), width: Math.max(1, step - 2), height: H - bottom - y(p.captures) });
    bar.append(h("svg:title", {}, `${new Date(p.hour).getHours()}:00 — ${p.captures} captures`));
    svg.append(bar);
    if (i % 3 === 0) {
      svg.append(h("svg:text", { x: x + step / 2, y: H - 4, "text-anchor": "middle" }, `${new Date(p.hour).getHours()}h`));
    }
  });
  return h("div", { class: "chart" }, svg);
}

// A product by name; a GTIN the catalog lacks (or names nothing for) says so.
function topProduct(p) {
  if (p.name) return p.name;
  const gtin = h("span", { class: "mono" }, p.gtin);
  if (p.in_catalog === false) {
    return [gtin, " ", h("span", { class: "badge NOT_FOUND", title: "Scanned, but not in the local catalog" }, "not in catalog")];
  }
  return [gtin, " ", h("span", { class: "muted" }, "(no name in the catalog)")];
}

function statusStack(byStatus) {
  const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
  const stack = h("div", { class: "stack", role: "img", "aria-label": Object.entries(byStatus).map(([k, v]) => `${k} ${v}`).join(", ") || "no captures" });
  const legend = h("div", { class: "legend" });
  for (const [status, n] of Object.entries(byStatus)) {
    const cls = ["COMPLETED", "NOT_FOUND", "FAILED"].includes(status) ? status : "other";
    const part = h("span", { class: `s-${cls}` });
    part.style.width = `${(100 * n) / Math.max(1, total)}%`;
    stack.append(part);
    legend.append(h("span", {}, h("span", { class: `swatch s-${cls}` }), `${status.replace("_", " ").toLowerCase()} ${n}`));
  }
  return [stack, legend];
}

export async function render(view, { on }) {
  const body = h("div");
  view.append(
    h("h1", {}, "Dashboard"),
    h("div", { class: "toolbar" },
      h("span", { class: "muted", id: "stats-time" }),
      h("div", { class: "spacer" }),
      h("a", { class: "button secondary", href: `${BASE}/exports/scans.csv`, download: "" }, "Export scans CSV"),
      h("a", { class: "button secondary", href: `${BASE}/exports/products.csv`, download: "" }, "Export products CSV")),
    body,
  );

  async function load() {
    const s = await get("/stats");
    clear(body);
    const mqtt = s.mqtt || {};
    append(body, 
      h("div", { class: "cards" },
        card("Scans today", s.scans_today, `${s.captures_total} in all`, "card-today"),
        card("Not found today", s.today_by_status.NOT_FOUND || 0, `${s.today_by_status.FAILED || 0} failed`),
        card("Active sessions", s.sessions_active),
        card("Proposals to review", s.proposals_pending),
        card("Outbox", s.outbox.depth, s.outbox.depth ? `oldest ${duration(s.outbox.oldest_age_s)}` : "empty", "card-outbox"),
        card("MQTT", badge(mqtt.state || "unknown"), mqtt.detail || (mqtt.broker ? mqtt.broker : ""), "card-mqtt")),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "h-chart" }, h("h2", { id: "h-chart" }, "Captures per hour"), hourlyChart(s.per_hour)),
        h("section", { class: "panel", "aria-labelledby": "h-status" }, h("h2", { id: "h-status" }, "Today by status"), statusStack(s.today_by_status),
          h("h3", {}, "Catalog completeness"),
          s.products_total
            ? [meter(Math.round(s.completeness_average)), h("p", { class: "muted" }, `${s.products_total} products; ` +
                ["0-24", "25-49", "50-74", "75-99", "100"].map((band) => `${band}%: ${s.completeness_buckets[band] ?? 0}`).join(" · "))]
            : h("p", { class: "muted" }, "No products in the catalog."))),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "h-top" }, h("h2", { id: "h-top" }, "Top products (7 days)"),
          s.top_products.length
            ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Product"), h("th", { scope: "col", class: "num" }, "Scans"))),
                h("tbody", {}, s.top_products.map((p) => h("tr", {}, h("td", {}, topProduct(p)), h("td", { class: "num" }, p.scans)))))
            : h("p", { class: "muted" }, "No product scans yet.")),
        h("section", { class: "panel", "aria-labelledby": "h-src" }, h("h2", { id: "h-src" }, "Sources"),
          s.sources.length
            ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Source"), h("th", { scope: "col" }, "State"), h("th", { scope: "col", class: "num" }, "Scans"), h("th", { scope: "col", class: "hide-narrow" }, "Last read"))),
                h("tbody", {}, s.sources.map((src) => h("tr", {},
                  h("td", {}, `${src.name} `, h("span", { class: "muted" }, src.kind)),
                  h("td", {}, badge(src.state), src.detail ? h("div", { class: "muted" }, src.detail) : null),
                  h("td", { class: "num" }, src.scans, src.errors ? h("div", { class: "error" }, `${src.errors} errors`) : null),
                  h("td", { class: "hide-narrow" }, ago(src.last_scan_at))))))
            : h("p", { class: "muted" }, "No sources configured."))),
      readRatePanel(s.read_rate),
    );
    document.getElementById("stats-time").textContent = `${s.device_id}${s.site ? ` · ${s.site}` : ""} · version ${s.version} · updated ${new Date(s.time).toLocaleTimeString()}`;
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

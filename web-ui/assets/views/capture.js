// One capture: its image, fields, GS1 data, checks, QR hops, and enrichment proposals to review.

import { BASE, get, patch, post } from "../api.js";
import { append, badge, clear, h, printable, time, toast } from "../dom.js";
import { captureTitle, checkBadges } from "./common.js";
import { aiName, gs1Order } from "./gs1.js";
import { percent, t } from "../login/i18n.js";

function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function qrPanel(qr) {
  if (!qr) return null;
  return h(
    "section",
    { class: "panel", "aria-labelledby": "qr-h" },
    h("h2", { id: "qr-h" }, t("QR link analysis")),
    fields([
      [t("Resolver"), [qr.resolver_type, qr.is_closient_resolver ? " (Closient)" : ""].join("")],
      [t("Domain"), qr.resolver_domain],
      [t("GTIN found"), qr.extracted_gtin],
      [t("Final URL"), qr.final_url],
      [t("Error"), qr.error_message],
    ]),
    qr.hops?.length
      ? h("ol", { class: "hops", "aria-label": t("Redirect hops") }, qr.hops.map((hop) => h("li", {}, h("span", { class: "badge" }, hop.status_code ?? "–"), " ", h("span", { class: "mono" }, hop.url))))
      : h("p", { class: "muted" }, t("No redirects followed.")),
  );
}

export async function render(view, { on, params }) {
  const [id] = params;
  const root = h("div");
  view.append(root);

  async function load() {
    const [c, proposals] = await Promise.all([get(`/captures/${id}`), get(`/captures/${id}/proposals`)]);
    clear(root);
    const retry = ["FAILED", "NOT_FOUND"].includes(c.status)
      ? h("button", { type: "button", class: "secondary", dataset: { needs: "operator" }, onclick: () => act(() => post(`/captures/${id}/retry`), t("Retried")) }, t("Retry"))
      : null;
    const image = c.uploaded_image_key
      ? h("a", { href: `${BASE}/captures/${id}/image`, target: "_blank", rel: "noopener" },
          h("img", { class: "photo", src: `${BASE}/captures/${id}/image?width=640`, alt: t("Photo of the capture") }))
      : h("div", { class: "panel empty" }, t("No image with this capture."));
    append(root, 
      h("h1", {}, captureTitle(c)),
      h("div", { class: "toolbar" }, badge(c.status), checkBadges(c.checks),
        h("a", { href: `#/sessions/${c.session_public_id}` }, t("Session")),
        h("div", { class: "spacer" }), retry),
      h(
        "div",
        { class: "detail" },
        h("div", {}, image),
        h(
          "section",
          { class: "panel", "aria-labelledby": "cap-h" },
          h("h2", { id: "cap-h" }, t("Capture")),
          fields([
            [t("Raw value"), h("span", { class: "mono" }, printable(c.raw_value))],
            [t("GTIN"), c.gtin],
            [t("Product"), c.product_name],
            [t("Type"), t(c.capture_type)],
            [t("Symbology"), [c.symbology, c.symbology_identifier].filter(Boolean).join(" ")],
            [t("Source"), c.source],
            [t("Created"), time(c.created)],
            [t("Processed"), time(c.processed_at)],
            [t("Revision"), c.revision],
            [t("Error"), c.error_message ? h("span", { class: "error" }, c.error_message) : ""],
          ]),
        ),
      ),
      Object.keys(c.gs1_dl_data || {}).length
        ? h("section", { class: "panel", "aria-labelledby": "gs1-h" }, h("h2", { id: "gs1-h" }, t("GS1 fields")),
            fields(gs1Order(c.gs1_dl_data).map(([ai, v]) => [aiName(ai), h("span", { class: "mono" }, v)])))
        : null,
      Object.keys(c.checks || {}).length
        ? h("section", { class: "panel", "aria-labelledby": "chk-h" }, h("h2", { id: "chk-h" }, t("Checks")),
            fields(Object.entries(c.checks).map(([k, v]) => [t(k), typeof v === "object" ? JSON.stringify(v) : String(v)])))
        : null,
      qrPanel(c.qr_analysis),
      proposalsPanel(c, proposals.results),
    );
  }

  async function act(fn, message) {
    try {
      await fn();
      if (message) toast(message);
      await load();
    } catch (e) {
      toast(e.message, true);
    }
  }

  function proposalsPanel(c, proposals) {
    const panel = h("section", { class: "panel", "aria-labelledby": "prop-h" }, h("h2", { id: "prop-h" }, t("Proposals ({n})", { n: proposals.length })));
    if (!proposals.length) {
      append(panel, h("p", { class: "muted" }, t("No enrichment proposals for this capture.")));
      return panel;
    }
    const rows = proposals.map((p) =>
      h(
        "tr",
        { dataset: { id: p.public_id, status: p.status } },
        h("th", { scope: "row" }, p.field_name),
        h("td", {}, h("div", {}, p.proposed_value), p.current_value ? h("div", { class: "muted" }, t("now: {value}", { value: p.current_value })) : null,
          p.reasoning ? h("div", { class: "muted" }, p.reasoning) : null),
        h("td", { class: "num" }, percent(p.confidence)),
        h("td", { class: "hide-narrow" }, p.source),
        h("td", {}, badge(p.status)),
        h("td", { class: "actions-cell" }, h("div", { class: "actions" },
          h("button", { type: "button", class: "ok", dataset: { needs: "operator" }, disabled: p.status === "ACCEPTED", "aria-label": t("Accept {field}: {value}", { field: p.field_name, value: p.proposed_value }),
            onclick: () => act(() => patch(`/proposals/${p.public_id}`, { status: "ACCEPTED" })) }, t("Accept")),
          h("button", { type: "button", class: "danger", dataset: { needs: "operator" }, disabled: p.status === "REJECTED", "aria-label": t("Reject {field}: {value}", { field: p.field_name, value: p.proposed_value }),
            onclick: () => act(() => patch(`/proposals/${p.public_id}`, { status: "REJECTED" })) }, t("Reject")))),
      ),
    );
    const accepted = proposals.filter((p) => p.status === "ACCEPTED").length;
    append(panel, 
      h("div", { class: "table-wrap" }, h("table", { class: "stacked" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("Field")), h("th", { scope: "col" }, t("Proposed")),
          h("th", { scope: "col", class: "num" }, t("Confidence")), h("th", { scope: "col", class: "hide-narrow" }, t("Source")),
          h("th", { scope: "col" }, t("Status")), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, t("Actions"))))),
        h("tbody", {}, rows))),
      h("div", { class: "toolbar" }, h("div", { class: "spacer" }),
        h("button", { type: "button", id: "apply", dataset: { needs: "operator" }, disabled: accepted === 0,
          onclick: () => act(async () => {
            const result = await post(`/captures/${id}/apply`);
            toast(t("Applied {n} to {product}", { n: result.applied.length, product: result.product?.name || result.product?.gtin }) +
              (result.skipped.length ? ` (${t("{n} skipped", { n: result.skipped.length })})` : ""));
          }) }, t("Apply {n} accepted to the product", { n: accepted }))),
    );
    return panel;
  }

  await load();
  let pending = null;
  const refresh = (data) => {
    if (data.public_id !== id && data.capture !== id) return;
    clearTimeout(pending);
    pending = setTimeout(load, 300);
  };
  const off1 = on("capture", refresh);
  const off2 = on("proposal", refresh);
  return { cleanup: () => { off1(); off2(); clearTimeout(pending); } };
}

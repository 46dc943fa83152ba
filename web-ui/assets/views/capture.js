// One capture: its image, fields, GS1 data, checks, QR hops, and enrichment proposals to review.

import { BASE, get, patch, post } from "../api.js";
import { append, badge, clear, h, printable, time, toast } from "../dom.js";
import { captureTitle, checkBadges } from "./common.js";
import { aiName } from "./gs1.js";

function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function qrPanel(qr) {
  if (!qr) return null;
  return h(
    "section",
    { class: "panel", "aria-labelledby": "qr-h" },
    h("h2", { id: "qr-h" }, "QR link analysis"),
    fields([
      ["Resolver", [qr.resolver_type, qr.is_closient_resolver ? " (Closient)" : ""].join("")],
      ["Domain", qr.resolver_domain],
      ["GTIN found", qr.extracted_gtin],
      ["Final URL", qr.final_url],
      ["Error", qr.error_message],
    ]),
    qr.hops?.length
      ? h("ol", { class: "hops", "aria-label": "Redirect hops" }, qr.hops.map((hop) => h("li", {}, h("span", { class: "badge" }, hop.status_code ?? "–"), " ", h("span", { class: "mono" }, hop.url))))
      : h("p", { class: "muted" }, "No redirects followed."),
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
      ? h("button", { type: "button", class: "secondary", dataset: { needs: "operator" }, onclick: () => act(() => post(`/captures/${id}/retry`), "Retried") }, "Retry")
      : null;
    const image = c.uploaded_image_key
      ? h("a", { href: `${BASE}/captures/${id}/image`, target: "_blank", rel: "noopener" },
          h("img", { class: "photo", src: `${BASE}/captures/${id}/image?width=640`, alt: `Photo of the capture` }))
      : h("div", { class: "panel empty" }, "No image with this capture.");
    append(root, 
      h("h1", {}, captureTitle(c)),
      h("div", { class: "toolbar" }, badge(c.status), checkBadges(c.checks),
        h("a", { href: `#/sessions/${c.session_public_id}` }, "Session"),
        h("div", { class: "spacer" }), retry),
      h(
        "div",
        { class: "detail" },
        h("div", {}, image),
        h(
          "section",
          { class: "panel", "aria-labelledby": "cap-h" },
          h("h2", { id: "cap-h" }, "Capture"),
          fields([
            ["Raw value", h("span", { class: "mono" }, printable(c.raw_value))],
            ["GTIN", c.gtin],
            ["Product", c.product_name],
            ["Type", c.capture_type],
            ["Symbology", [c.symbology, c.symbology_identifier].filter(Boolean).join(" ")],
            ["Source", c.source],
            ["Created", time(c.created)],
            ["Processed", time(c.processed_at)],
            ["Revision", c.revision],
            ["Error", c.error_message ? h("span", { class: "error" }, c.error_message) : ""],
          ]),
        ),
      ),
      Object.keys(c.gs1_dl_data || {}).length
        ? h("section", { class: "panel", "aria-labelledby": "gs1-h" }, h("h2", { id: "gs1-h" }, "GS1 fields"),
            fields(Object.entries(c.gs1_dl_data).map(([ai, v]) => [aiName(ai), h("span", { class: "mono" }, v)])))
        : null,
      Object.keys(c.checks || {}).length
        ? h("section", { class: "panel", "aria-labelledby": "chk-h" }, h("h2", { id: "chk-h" }, "Checks"),
            fields(Object.entries(c.checks).map(([k, v]) => [k.replaceAll("_", " "), typeof v === "object" ? JSON.stringify(v) : String(v)])))
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
    const panel = h("section", { class: "panel", "aria-labelledby": "prop-h" }, h("h2", { id: "prop-h" }, `Proposals (${proposals.length})`));
    if (!proposals.length) {
      append(panel, h("p", { class: "muted" }, "No enrichment proposals for this capture."));
      return panel;
    }
    const rows = proposals.map((p) =>
      h(
        "tr",
        { dataset: { id: p.public_id, status: p.status } },
        h("th", { scope: "row" }, p.field_name),
        h("td", {}, h("div", {}, p.proposed_value), p.current_value ? h("div", { class: "muted" }, `now: ${p.current_value}`) : null,
          p.reasoning ? h("div", { class: "muted" }, p.reasoning) : null),
        h("td", { class: "num" }, `${Math.round(p.confidence * 100)}%`),
        h("td", { class: "hide-narrow" }, p.source),
        h("td", {}, badge(p.status)),
        h("td", { class: "actions-cell" }, h("div", { class: "actions" },
          h("button", { type: "button", class: "ok", dataset: { needs: "operator" }, disabled: p.status === "ACCEPTED", "aria-label": `Accept ${p.field_name}: ${p.proposed_value}`,
            onclick: () => act(() => patch(`/proposals/${p.public_id}`, { status: "ACCEPTED" })) }, "Accept"),
          h("button", { type: "button", class: "danger", dataset: { needs: "operator" }, disabled: p.status === "REJECTED", "aria-label": `Reject ${p.field_name}: ${p.proposed_value}`,
            onclick: () => act(() => patch(`/proposals/${p.public_id}`, { status: "REJECTED" })) }, "Reject"))),
      ),
    );
    const accepted = proposals.filter((p) => p.status === "ACCEPTED").length;
    append(panel, 
      h("div", { class: "table-wrap" }, h("table", { class: "stacked" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Proposed"),
          h("th", { scope: "col", class: "num" }, "Confidence"), h("th", { scope: "col", class: "hide-narrow" }, "Source"),
          h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
        h("tbody", {}, rows))),
      h("div", { class: "toolbar" }, h("div", { class: "spacer" }),
        h("button", { type: "button", id: "apply", dataset: { needs: "operator" }, disabled: accepted === 0,
          onclick: () => act(async () => {
            const result = await post(`/captures/${id}/apply`);
            toast(`Applied ${result.applied.length} to ${result.product?.name || result.product?.gtin}` +
              (result.skipped.length ? ` (${result.skipped.length} skipped)` : ""));
          }) }, `Apply ${accepted} accepted to the product`)),
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

// The local product catalog: search, completeness, edit, import and export.

import { BASE, get, put, request } from "../api.js";
import { append, clear, h, meter, time, toast } from "../dom.js";
import { pager } from "./common.js";

const LIMIT = 50;
const TEXT_FIELDS = [
  ["name", "Name"], ["brand", "Brand"], ["net_content", "Net content"], ["category", "Category"],
  ["country_of_origin", "Country of origin"], ["ingredients", "Ingredients"],
];

export async function render(view, { on }) {
  const search = h("input", { id: "product-q", type: "search", placeholder: "GTIN, name or brand", autocomplete: "off" });
  const order = h("select", { id: "product-order" },
    h("option", { value: "gtin" }, "GTIN"), h("option", { value: "name" }, "Name"),
    h("option", { value: "completeness" }, "Least complete"), h("option", { value: "-completeness" }, "Most complete"),
    h("option", { value: "-modified" }, "Recently changed"));
  const file = h("input", { id: "product-file", type: "file", accept: ".csv,.json,text/csv,application/json", class: "visually-hidden" });
  const body = h("div");
  const dialog = h("dialog", { "aria-labelledby": "edit-h" });
  view.append(
    h("h1", {}, "Products"),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "product-q" }, "Search"), search),
      h("div", { class: "field" }, h("label", { for: "product-order" }, "Order"), order),
      h("div", { class: "spacer" }),
      h("button", { type: "button", class: "secondary", dataset: { needs: "admin" }, onclick: () => edit(null) }, "Add product"),
      h("label", { for: "product-file", class: "button secondary", dataset: { needs: "admin" }, tabindex: 0,
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } } }, "Import CSV/JSON"),
      file,
      h("a", { class: "button secondary", href: `${BASE}/exports/products.csv`, download: "" }, "Export CSV")),
    body,
    dialog,
  );
  let offset = 0;

  async function load() {
    const q = new URLSearchParams({ limit: LIMIT, offset, order: order.value });
    if (search.value.trim()) q.set("q", search.value.trim());
    const page = await get(`/products?${q}`);
    clear(body);
    if (!page.results.length) {
      append(body, h("p", { class: "empty" }, search.value ? "No product matches." : "The catalog is empty: import a CSV or JSON file, or add a product."));
      return;
    }
    append(body, 
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "visually-hidden" }, "Products"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "GTIN"), h("th", { scope: "col" }, "Name"),
          h("th", { scope: "col", class: "hide-narrow" }, "Brand"), h("th", { scope: "col", class: "hide-narrow" }, "Category"),
          h("th", { scope: "col" }, "Completeness"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Edit")))),
        h("tbody", {}, page.results.map((p) => h("tr", { dataset: { gtin: p.gtin } },
          h("td", { class: "mono" }, p.gtin),
          h("td", {}, p.name || h("span", { class: "muted" }, "(no name)")),
          h("td", { class: "hide-narrow" }, p.brand),
          h("td", { class: "hide-narrow" }, p.category),
          h("td", {}, meter(p.completeness)),
          h("td", {}, h("button", { type: "button", class: "secondary", dataset: { needs: "admin" }, "aria-label": `Edit ${p.name || p.gtin}`, onclick: () => edit(p) }, "Edit"))))))),
      pager({ ...page, offset, limit: LIMIT }, (o) => { offset = o; load(); }),
    );
  }

  function edit(product) {
    clear(dialog);
    const inputs = {};
    const gtin = h("input", { id: "edit-gtin", value: product?.gtin || "", required: true, inputmode: "numeric", readonly: !!product });
    const rows = [h("label", { for: "edit-gtin" }, "GTIN"), gtin];
    for (const [name, label] of TEXT_FIELDS) {
      const input = name === "ingredients"
        ? h("textarea", { id: `edit-${name}` }, product?.[name] || "")
        : h("input", { id: `edit-${name}`, value: product?.[name] || "", autofocus: name === "name" && !!product });
      inputs[name] = input;
      rows.push(h("label", { for: `edit-${name}` }, label), input);
    }
    const certs = h("input", { id: "edit-certifications", value: (product?.certifications || []).join(" | ") });
    rows.push(h("label", { for: "edit-certifications" }, "Certifications"), certs);
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { method: "dialog" },
      h("h2", { id: "edit-h" }, product ? `Edit ${product.name || product.gtin}` : "Add a product"),
      product ? h("p", { class: "muted" }, `Changed ${time(product.modified)} · ${product.completeness}% complete`) : null,
      h("div", { class: "form-grid" }, rows),
      error,
      h("div", { class: "toolbar" }, h("div", { class: "spacer" }),
        h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"),
        h("button", { type: "submit" }, "Save")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const [name] of TEXT_FIELDS) body[name] = inputs[name].value.trim();
      body.certifications = certs.value.split("|").map((s) => s.trim()).filter(Boolean);
      try {
        await put(`/products/${encodeURIComponent(gtin.value.trim())}`, body);
        dialog.close();
        toast("Saved");
        load();
      } catch (e) {
        error.textContent = e.message;
      }
    });
    dialog.append(form);
    dialog.showModal();
  }

  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    const isJson = chosen.name.toLowerCase().endsWith(".json");
    try {
      const result = await request("/products/import", { method: "POST", raw: await chosen.text(), contentType: isJson ? "application/json" : "text/csv" });
      toast(`Imported ${result.imported} products`);
      load();
    } catch (e) {
      toast(e.message, true);
    } finally {
      file.value = "";
    }
  });
  let typing = null;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { offset = 0; load(); }, 250); });
  order.addEventListener("change", () => { offset = 0; load(); });
  await load();
  const off1 = on("product", () => load());
  const off2 = on("catalog", () => load());
  return { cleanup: () => { off1(); off2(); clearTimeout(typing); } };
}

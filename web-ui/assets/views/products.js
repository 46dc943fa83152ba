// The local product catalog: search, completeness, edit, import and export.

import { BASE, get, put, request } from "../api.js";
import { append, clear, h, meter, time, toast } from "../dom.js";
import { pager } from "./common.js";
import { N_, number, percent, t } from "../login/i18n.js";

const LIMIT = 50;
const TEXT_FIELDS = [
  ["name", N_("Name")], ["brand", N_("Brand")], ["net_content", N_("Net content")], ["category", N_("Category")],
  ["country_of_origin", N_("Country of origin")], ["ingredients", N_("Ingredients")],
];

export async function render(view, { on }) {
  const search = h("input", { id: "product-q", type: "search", placeholder: t("GTIN, name or brand"), autocomplete: "off" });
  const order = h("select", { id: "product-order" },
    h("option", { value: "gtin" }, t("GTIN")), h("option", { value: "name" }, t("Name")),
    h("option", { value: "completeness" }, t("Least complete")), h("option", { value: "-completeness" }, t("Most complete")),
    h("option", { value: "-modified" }, t("Recently changed")));
  const file = h("input", { id: "product-file", type: "file", accept: ".csv,.json,text/csv,application/json", class: "visually-hidden" });
  const body = h("div");
  const dialog = h("dialog", { "aria-labelledby": "edit-h" });
  view.append(
    h("h1", {}, t("Products")),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "product-q" }, t("Search")), search),
      h("div", { class: "field" }, h("label", { for: "product-order" }, t("Order")), order),
      h("div", { class: "spacer" }),
      h("button", { type: "button", class: "secondary", dataset: { needs: "admin" }, onclick: () => edit(null) }, t("Add product")),
      h("label", { for: "product-file", class: "button secondary", dataset: { needs: "admin" }, tabindex: 0,
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } } }, t("Import CSV/JSON")),
      file,
      h("a", { class: "button secondary", href: `${BASE}/exports/products.csv`, download: "" }, t("Export CSV"))),
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
      append(body, h("p", { class: "empty" }, search.value ? t("No product matches.") : t("The catalog is empty: import a CSV or JSON file, or add a product.")));
      return;
    }
    append(body, 
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "visually-hidden" }, t("Products")),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("GTIN")), h("th", { scope: "col" }, t("Name")),
          h("th", { scope: "col", class: "hide-narrow" }, t("Brand")), h("th", { scope: "col", class: "hide-narrow" }, t("Category")),
          h("th", { scope: "col" }, t("Completeness")), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, t("Edit"))))),
        h("tbody", {}, page.results.map((p) => h("tr", { dataset: { gtin: p.gtin } },
          h("td", { class: "mono" }, p.gtin),
          h("td", {}, p.name || h("span", { class: "muted" }, t("(no name)"))),
          h("td", { class: "hide-narrow" }, p.brand),
          h("td", { class: "hide-narrow" }, p.category),
          h("td", {}, meter(p.completeness)),
          h("td", {}, h("button", { type: "button", class: "secondary", dataset: { needs: "admin" }, "aria-label": t("Edit {name}", { name: p.name || p.gtin }), onclick: () => edit(p) }, t("Edit")))))))),
      pager({ ...page, offset, limit: LIMIT }, (o) => { offset = o; load(); }),
    );
  }

  function edit(product) {
    clear(dialog);
    const inputs = {};
    const gtin = h("input", { id: "edit-gtin", value: product?.gtin || "", required: true, inputmode: "numeric", readonly: !!product });
    const rows = [h("label", { for: "edit-gtin" }, t("GTIN")), gtin];
    for (const [name, label] of TEXT_FIELDS) {
      const input = name === "ingredients"
        ? h("textarea", { id: `edit-${name}` }, product?.[name] || "")
        : h("input", { id: `edit-${name}`, value: product?.[name] || "", autofocus: name === "name" && !!product });
      inputs[name] = input;
      rows.push(h("label", { for: `edit-${name}` }, t(label)), input);
    }
    const certs = h("input", { id: "edit-certifications", value: (product?.certifications || []).join(" | ") });
    rows.push(h("label", { for: "edit-certifications" }, t("Certifications")), certs);
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { method: "dialog" },
      h("h2", { id: "edit-h" }, product ? t("Edit {name}", { name: product.name || product.gtin }) : t("Add a product")),
      product ? h("p", { class: "muted" }, t("Changed {time} · {percent} complete", { time: time(product.modified), percent: percent(product.completeness / 100) })) : null,
      h("div", { class: "form-grid" }, rows),
      error,
      h("div", { class: "toolbar" }, h("div", { class: "spacer" }),
        h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, t("Cancel")),
        h("button", { type: "submit" }, t("Save"))));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const [name] of TEXT_FIELDS) body[name] = inputs[name].value.trim();
      body.certifications = certs.value.split("|").map((s) => s.trim()).filter(Boolean);
      try {
        await put(`/products/${encodeURIComponent(gtin.value.trim())}`, body);
        dialog.close();
        toast(t("Saved"));
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
      toast(t("Imported {n} products", { n: number(result.imported) }));
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

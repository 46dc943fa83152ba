// The API reference page: renders the station's own OpenAPI document (no copy of it here).
// Text goes in with textContent only: nothing from the document is parsed as HTML.

import { N_, loadLanguage, t, translateDom } from "/assets/login/i18n.js";

const DOC_URL = "/scanner/api/v1/openapi.json";
const FIELD_COLUMNS = [N_("field"), N_("type"), "", N_("rules"), N_("meaning")];
const PARAM_COLUMNS = [N_("parameter"), N_("in"), N_("type"), "", N_("rules"), N_("meaning")];
const column = (key) => el("th", {}, key ? t(key) : "");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function resolve(doc, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    schema = doc.components.schemas[schema.$ref.split("/").pop()];
  }
  return schema || {};
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : "";
}

// A short type for a property: "string", "integer | null", "CaptureOut", "array of ProposalOut".
function typeOf(doc, schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(doc, s)).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.type === "array") return `array of ${typeOf(doc, schema.items)}`;
  if (schema.type === "object" && !schema.properties) return "object";
  const format = schema.format ? ` (${schema.format})` : "";
  return (schema.type || "any") + format;
}

// The rules a value must follow: pattern, lengths, bounds, object limits.
function rulesOf(schema) {
  const rules = [];
  const all = [schema, ...(schema.anyOf || [])];
  for (const s of all) {
    if (!s) continue;
    if (s.pattern) rules.push(`pattern ${s.pattern}`);
    if (s.minLength !== undefined) rules.push(`≥ ${s.minLength} chars`);
    if (s.maxLength !== undefined) rules.push(`≤ ${s.maxLength} chars`);
    if (s.minimum !== undefined) rules.push(`≥ ${s.minimum}`);
    if (s.maximum !== undefined) rules.push(`≤ ${s.maximum}`);
    if (s.maxProperties !== undefined) rules.push(`≤ ${s.maxProperties} keys`);
    if (s.propertyNames && s.propertyNames.maxLength !== undefined) {
      rules.push(`keys ≤ ${s.propertyNames.maxLength} chars`);
    }
  }
  if (schema.default !== undefined) rules.push(`default ${JSON.stringify(schema.default)}`);
  return rules.join("; ");
}

function fieldTable(doc, schema) {
  const model = resolve(doc, schema);
  if (!model.properties) return el("p", { class: "muted" }, typeOf(doc, schema));
  const required = new Set(model.required || []);
  const rows = Object.entries(model.properties).map(([name, prop]) =>
    el(
      "tr",
      { "data-field": name },
      el("td", {}, el("code", {}, name)),
      el("td", {}, typeOf(doc, prop)),
      el("td", {}, required.has(name) ? t("required") : t("optional")),
      el("td", { class: "rule" }, rulesOf(prop)),
      el("td", {}, prop.description || resolve(doc, prop).description || ""),
    ),
  );
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, FIELD_COLUMNS.map(column))),
    el("tbody", {}, rows),
  );
}

// "auth: X-API-Key header, or sessionid cookie + X-CSRF-Token header, or …"
function authText(doc, security) {
  if (!security || security.length === 0) return t("open (no credentials)");
  const schemes = doc.components.securitySchemes || {};
  const describe = (key) => (schemes[key] ? `${schemes[key].name} ${schemes[key].in}` : key);
  const ways = security.map((req) => Object.keys(req).map(describe).join(" + "));
  return t("auth: {ways}", { ways: ways.join(t(", or ")) });
}

function operation(doc, path, method, op) {
  const id = op.operationId;
  const body = op.requestBody ? Object.entries(op.requestBody.content) : [];
  const params = op.parameters || [];
  const responses = Object.entries(op.responses || {});
  const ok = responses.filter(([status]) => Number(status) < 400);
  const errors = responses.filter(([status]) => Number(status) >= 400).map(([s]) => s);
  return el(
    "section",
    { class: "op", id, "data-search": `${method} ${path} ${op.summary}`.toLowerCase() },
    el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()),
      el("span", { class: "path" }, path), el("span", {}, op.summary || "")),
    el("p", { class: "auth" }, authText(doc, op.security)),
    op.description ? el("p", {}, op.description) : null,
    params.length
      ? [el("h4", {}, t("Parameters")),
        el("table", {},
          el("thead", {}, el("tr", {}, PARAM_COLUMNS.map(column))),
          el("tbody", {}, params.map((p) => el("tr", { "data-field": p.name },
            el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, typeOf(doc, p.schema)),
            el("td", {}, p.required ? t("required") : t("optional")), el("td", { class: "rule" }, rulesOf(p.schema || {})),
            el("td", {}, p.description || "")))))]
      : null,
    body.map(([media, content]) => [
      el("h4", {}, t("Request body ({media})", { media })),
      fieldTable(doc, content.schema),
    ]),
    ok.map(([status, answer]) => [
      el("h4", {}, `${status}: ${Object.keys(answer.content || {}).join(", ") || t("no body")}`),
      answer.content && answer.content["application/json"]
        ? fieldTable(doc, answer.content["application/json"].schema)
        : null,
    ]),
    errors.length
      ? el("p", { class: "muted" }, t("Errors {statuses}:", { statuses: errors.join(", ") }), " ",
        el("code", {}, '{"error": {"code", "message", "field"}}'))
      : null,
  );
}

async function main() {
  await loadLanguage();
  translateDom();
  const main = document.getElementById("reference");
  const toc = document.getElementById("toc");
  const response = await fetch(DOC_URL, { credentials: "same-origin" });
  if (response.status === 401) {
    location.href = `/login?next=${encodeURIComponent("/api")}`;
    return;
  }
  if (!response.ok) {
    main.replaceChildren(el("p", { role: "alert" }, t("Could not load {url}: {status}", { url: DOC_URL, status: response.status })));
    return;
  }
  const doc = await response.json();
  document.title = `${doc.info.title} ${doc.info.version} · ${t("API reference")}`;
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    const group = path.replace("/scanner/api/v1", "").split("/")[1] || "station";
    if (!groups.has(group)) groups.set(group, []);
    for (const [method, op] of Object.entries(item)) groups.get(group).push([path, method, op]);
  }
  // Closient's resources first, the station's own after them.
  const order = ["captures", "sessions", "proposals", "products", "exports", "events", "sources"];
  const rank = (group) => (order.includes(group) ? order.indexOf(group) : order.length);
  const sorted = [...groups].sort((a, b) => rank(a[0]) - rank(b[0]));
  const sections = [];
  const links = [];
  for (const [group, ops] of sorted) {
    links.push(el("h2", {}, group));
    for (const [path, method, op] of ops) {
      sections.push(operation(doc, path, method, op));
      links.push(el("a", { href: `#${op.operationId}` }, `${method.toUpperCase()} ${path.replace("/scanner/api/v1", "")}`));
    }
  }
  main.replaceChildren(el("p", {}, doc.info.description), ...sections);
  toc.replaceChildren(...links);
  document.getElementById("filter").addEventListener("input", (event) => {
    const words = event.target.value.toLowerCase().trim();
    for (const section of sections) {
      section.classList.toggle("hidden", words !== "" && !section.dataset.search.includes(words));
    }
  });
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

main();

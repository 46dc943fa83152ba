// Names of the GS1 Application Identifiers a station meets most (the rest show their number).

import { N_, t } from "../login/i18n.js";

const NAMES = {
  "00": N_("SSCC"), "01": N_("GTIN"), "02": N_("Contained GTIN"), "10": N_("Batch/lot"), "11": N_("Production date"),
  "13": N_("Packaging date"), "15": N_("Best before"), "16": N_("Sell by"), "17": N_("Expiry"), "21": N_("Serial"),
  "22": N_("Consumer variant"), "30": N_("Count"), "37": N_("Count of items"), "235": N_("Third-party serial"),
  "240": N_("Additional ID"), "241": N_("Customer part no."), "250": N_("Secondary serial"), "254": N_("GLN extension"),
  "310": N_("Net weight (kg)"), "3102": N_("Net weight (kg)"), "3103": N_("Net weight (kg)"), "392": N_("Price"),
  "3922": N_("Price"), "400": N_("Customer order"), "410": N_("Ship to GLN"), "414": N_("Location GLN"),
  "422": N_("Country of origin"), "7003": N_("Expiry date/time"), "8008": N_("Production date/time"),
  "8200": N_("Product URL"),
};

export function aiName(ai) {
  const name = NAMES[ai] || NAMES[ai.slice(0, 3)];
  return name ? `${t(name)} (${ai})` : `AI ${ai}`;
}

// GS1 fields in GS1's order: (01) before (10) before (17). Object.entries would not do:
// JavaScript lists integer-like keys ("10", "17") before the others ("01"), whatever the JSON.
export function gs1Order(data) {
  return Object.entries(data || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// Names of the GS1 Application Identifiers a station meets most (the rest show their number).

const NAMES = {
  "00": "SSCC", "01": "GTIN", "02": "Contained GTIN", "10": "Batch/lot", "11": "Production date",
  "13": "Packaging date", "15": "Best before", "16": "Sell by", "17": "Expiry", "21": "Serial",
  "22": "Consumer variant", "30": "Count", "37": "Count of items", "235": "Third-party serial",
  "240": "Additional ID", "241": "Customer part no.", "250": "Secondary serial", "254": "GLN extension",
  "310": "Net weight (kg)", "3102": "Net weight (kg)", "3103": "Net weight (kg)", "392": "Price",
  "3922": "Price", "400": "Customer order", "410": "Ship to GLN", "414": "Location GLN",
  "422": "Country of origin", "7003": "Expiry date/time", "8008": "Production date/time",
  "8200": "Product URL",
};

export function aiName(ai) {
  const name = NAMES[ai] || NAMES[ai.slice(0, 3)];
  return name ? `${name} (${ai})` : `AI ${ai}`;
}

// GS1 fields in GS1's order: (01) before (10) before (17). Object.entries would not do:
// JavaScript lists integer-like keys ("10", "17") before the others ("01"), whatever the JSON.
export function gs1Order(data) {
  return Object.entries(data || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

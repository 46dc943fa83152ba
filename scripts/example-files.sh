#!/usr/bin/env bash
# The files the example configurations (docs/examples/*.toml) name under /etc/scanstation,
# made under another folder, so `--check-config` can judge an example away from a device:
#
#   scripts/example-files.sh DIR
#
# DIR gets recalls.csv, mqtt-password, wms.secret and tls/ (a station CA, a fleet CA and a
# station certificate signed by it; throwaway keys, valid for two days). Use the examples
# with /etc/scanstation replaced by DIR. The tests and the arm64 smoke both use this script.
set -euo pipefail
dir="${1:?usage: example-files.sh DIR}"
mkdir -p "${dir}/tls"
printf 'gtin,batch\n09506000134352,RECALL7\n' >"${dir}/recalls.csv"
printf 's3cret\n' >"${dir}/mqtt-password"
printf 'shared secret\n' >"${dir}/wms.secret"
cd "${dir}/tls"
for ca in ca fleet-ca; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "${ca}.key" -out "${ca}.pem" -days 2 \
    -subj "/CN=${ca}" 2>/dev/null
done
openssl req -newkey rsa:2048 -nodes -keyout station.key -out station.csr -subj /CN=lane-01 \
  2>/dev/null
openssl x509 -req -in station.csr -CA fleet-ca.pem -CAkey fleet-ca.key -CAcreateserial \
  -out station.pem -days 2 2>/dev/null
chmod 0600 ./*.key ../mqtt-password ../wms.secret

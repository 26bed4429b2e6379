#!/usr/bin/env bash
# Installs the system packages the tests use (a real MQTT broker with mosquitto_passwd, a real browser, openssl for
# the broker's test certificates; e2fsprogs' chattr and util-linux' prlimit for the disk-fault tests) when missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-system-deps: missing ${need[*]}; run as root or install them (apt-get install ${need[*]})" >&2
  exit 0
fi
echo "ensure-system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Installs the Debian packages cxstream's tests use, only when missing:
# PostgreSQL (integration tests), Prometheus + Alertmanager (promtool/amtool and
# the real-Prometheus alert test), Chromium (the ops-page browser test), a C
# compiler and the Python headers (`make native`, the mypyc-compiled core).
# Services the packages auto-start are stopped: the tests start their own.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
python_include=$(python3.11 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)
[ -n "$python_include" ] && [ -f "$python_include/Python.h" ] || need+=(python3.11-dev)

if [ ${#need[@]} -eq 0 ]; then
  echo "system deps: all present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep package post-install scripts from starting services we do not want.
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
for svc in postgresql prometheus prometheus-alertmanager prometheus-node-exporter; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
echo "system deps: done"

#!/usr/bin/env bash
# Install promtool and amtool (Debian's prometheus and prometheus-alertmanager
# packages) when they are missing. CI runs this before the rule tests; we only want
# the binaries, so any service the packages start on install is stopped and disabled.
# Must run as root (or under sudo) on a Debian/Ubuntu host.
set -euo pipefail

packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v amtool >/dev/null 2>&1 || packages+=(prometheus-alertmanager)

if [ "${#packages[@]}" -eq 0 ]; then
    echo "promtool and amtool already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y --no-install-recommends "${packages[@]}"

# The packages enable and start their daemons; stop them so nothing listens on
# 9090/9093 behind our back. Without systemd (containers) there is nothing to stop
# except processes started by invoke-rc.d, which `service` handles.
for service in prometheus prometheus-alertmanager prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$service" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service "$service" stop >/dev/null 2>&1 || true
        update-rc.d -f "$service" remove >/dev/null 2>&1 || true
    fi
done

promtool --version | head -n 1
amtool --version 2>&1 | head -n 1

#!/usr/bin/env bash
# Installs what the browser tests need: Debian's Chromium and playwright-core (npm, pinned in
# scripts/browser/package.json). Idempotent; prints the chromium path. Tests skip with a clear
# message when ALIGN_SKIP_BROWSER=1.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ]; then
  npm ci --silent --no-audit --no-fund 2>/dev/null || npm install --silent --no-audit --no-fund
fi
command -v chromium

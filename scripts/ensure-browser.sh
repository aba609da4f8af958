#!/usr/bin/env bash
# Makes sure a Chromium is there for the UI's browser tests (tests/ui/test_ui_browser.py,
# Playwright driving the system's Chromium rather than a downloaded one): installs
# Debian's 'chromium' package with apt-get when it is missing. Idempotent; CI calls it.
# Without root, apt-get or a network it says why on stderr and exits 0: the browser tests
# then skip with that reason. CONN_CHROMIUM may name another Chromium binary.
set -u
if [ -n "${CONN_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-browser: no chromium and no apt-get; install Chromium and set CONN_CHROMIUM" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ensure-browser: no chromium, and not root: run 'apt-get install chromium'" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; then
  $SUDO apt-get update >/dev/null 2>&1 || true
  $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || echo "ensure-browser: 'apt-get install chromium' failed (no network?); the browser tests skip" >&2
fi
exit 0

#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` are on PATH (tests/ops runs the alerting rules' unit tests
# and a real Prometheus against the service): install Debian's `prometheus` package when missing
# (as root). The package's own service is never started: the tests start their own Prometheus on
# loopback in a temporary directory. Fails loudly (never skips).
set -euo pipefail
say() { echo "ensure-prometheus: $*"; }
die() { echo "ensure-prometheus: $*" >&2; exit 1; }

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  [ "$(id -u)" = 0 ] || die "prometheus/promtool missing and not root: install Debian's 'prometheus' package"
  say "installing Prometheus from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the package must not start (or enable) its own prometheus service here
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null || die "apt-get install prometheus failed"
fi
command -v promtool >/dev/null || die "promtool still missing after the install"
say "$(promtool --version 2>&1 | head -1)"

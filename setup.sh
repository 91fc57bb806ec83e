#!/usr/bin/env bash
# Sets evoagg up on Debian 12 and runs one job:
#   bash setup.sh demo   # the main job (see README "Quick start")
#   bash setup.sh test   # the whole test suite (what CI runs)
#   bash setup.sh        # set up only
# Installs, when missing: the Rust->wasm toolchain from Debian (rustc-web, rust-web-src,
# cargo-web, lld), git, python3 and python3-venv, then the package into ./.venv with its
# test extras.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-setup}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
[ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library/core ] || need_apt+=(rustc-web rust-web-src)
[ -x /usr/bin/cargo ] || need_apt+=(cargo-web)
command -v wasm-ld >/dev/null 2>&1 || need_apt+=(lld)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  # Debian ships venv without ensurepip unless python3-venv is installed: try, then install it.
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    echo "setup: installing python3-venv (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  fi
fi
stamp=.venv/.evoagg-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the package into .venv (pip)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

case "$job" in
  setup) echo "setup: done (.venv/bin/evoagg is ready)" ;;
  demo)
    # The toolchain's first compiles (core and alloc per build slot, the kernels, the
    # codec proofs) happen here, so the demo's clock covers the system's work only.
    .venv/bin/evoagg prebuild >/dev/null
    # The main job: two tenants served, improved and hot-swapped under traffic (README).
    exec .venv/bin/evoagg demo --duration "${EVOAGG_DEMO_SECONDS:-900}" --out out/demo
    ;;
  test)
    # The integration tests build kernels: warm every build slot first, side by side.
    .venv/bin/evoagg prebuild >/dev/null
    exec .venv/bin/python -m pytest -q
    ;;
  *) echo "usage: bash setup.sh [setup|demo|test]" >&2; exit 2 ;;
esac

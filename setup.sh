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
    mkdir -p out
    for w in w1:1042 w2:2077; do
      name=${w%%:*}; org=${w##*:}
      echo "== $name (org $org): generic kernel"
      .venv/bin/evoagg gen --workload "configs/workloads/$name.yaml" --messages 2000 --seed 7 --out "out/$name.bin"
      .venv/bin/evoagg replay --config "configs/tenants/$org.yaml" --input "out/$name.bin" --kernel generic --out "out/$name.parquet"
      echo "== $name: specialize (output hash next to the generic kernel's)"
      .venv/bin/evoagg specialize --config "configs/tenants/$org.yaml" --out "out/spec-$org" --messages "out/$name.bin"
      echo "== $name: verify the specialized kernel on the Ray verifier pool"
      .venv/bin/evoagg gen --workload "configs/workloads/$name.yaml" --messages 300 --seed 1007 --out "out/$name-heldback.bin"
      .venv/bin/evoagg gen --workload "configs/workloads/$name.yaml" --messages 200 --seed 8 --out "out/$name-training.bin"
      .venv/bin/evoagg verify --config "configs/tenants/$org.yaml" --source "out/spec-$org" \
        --messages "out/$name-heldback.bin" --training "out/$name-training.bin" --report "out/verify-$org.json"
      echo "== $name: benchmark (out/bench-$name.json, out/bench-$name.png)"
      .venv/bin/evoagg bench --workload "configs/workloads/$name.yaml" --messages "$([ "$name" = w1 ] && echo 300 || echo 100)" \
        --plot "out/bench-$name.png" --out "out/bench-$name.json" --quiet
      echo "== $name: evolve (offline proposer, 2 islands on Ray; out/evolve-$org/)"
      rm -rf "out/evolve-$org"
      .venv/bin/evoagg evolve --workload "configs/workloads/$name.yaml" --generations 6 --islands 2 \
        --training "$([ "$name" = w1 ] && echo 400 || echo 150)" --held-back 150 --workdir "out/evolve-$org" --json > "out/evolve-$org.json"
      .venv/bin/python -c 'import json, sys; d = json.load(open(sys.argv[1])); keys = ("best", "specialized_ratio_to_generic", "candidates", "accepted", "duplicates", "rejections_by_stage", "seconds"); print(json.dumps({k: d[k] for k in keys}, indent=1))' "out/evolve-$org.json"
      echo
    done
    ;;
  test) exec .venv/bin/python -m pytest -q ;;
  *) echo "usage: bash setup.sh [setup|demo|test]" >&2; exit 2 ;;
esac

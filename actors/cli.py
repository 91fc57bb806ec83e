"""The ``evoagg`` command line: ``gen`` and ``replay`` (more commands arrive with later parts).

Exit codes: 0 success, 1 a runtime failure (a kernel trapped, a build failed),
2 bad usage or bad input files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from actors.errors import BuildFailed, ConfigError, EvoaggError, KernelError, ModuleRejected, PayloadError, StreamError


def _gen(args: argparse.Namespace) -> int:
    from actors.loading import load_workload
    from actors.payload import write_stream
    from actors.workload import generate

    wl = load_workload(args.workload)
    if args.messages < 0:
        raise ConfigError("--messages must be >= 0")
    t0 = time.perf_counter()
    n = write_stream(args.out, generate(wl, args.messages, args.seed))
    print(f"wrote {n} messages of workload {wl.name} (org {wl.tenant.org}) to {args.out} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


def _load_kernel(spec: str) -> tuple[bytes, str]:
    from actors.kernel.build import build

    if spec == "generic":
        r = build(on_compile=lambda msg: print(f"evoagg: {msg}", file=sys.stderr, flush=True))
        return r.wasm, f"generic ({r.source_hash[:12]}, {'cached' if r.cached else f'built in {r.seconds:.1f} s'})"
    path = Path(spec)
    if path.suffix != ".wasm" or not path.exists():
        raise ConfigError(f"--kernel: expected 'generic' or an existing .wasm file, found {spec!r}")
    return path.read_bytes(), str(path)


def _replay(args: argparse.Namespace) -> int:
    from actors.kernel.host import KernelHost
    from actors.loading import load_sandbox, load_tenant
    from actors.output import write_rows
    from actors.payload import read_payloads
    from actors.replay import replay

    cfg = load_tenant(args.config)
    sandbox = load_sandbox(args.sandbox) if args.sandbox else None
    if args.batch < 1:
        raise ConfigError("--batch must be >= 1")
    if args.flush_lag is not None and not 0 <= args.flush_lag <= 2**31:
        raise ConfigError("--flush-lag must be 0..2^31 seconds")
    if args.out and args.out.suffix not in (".parquet", ".csv", ".jsonl"):
        raise ConfigError(f"--out: expected a .parquet, .csv or .jsonl path, found {args.out}")
    if args.out and not args.out.resolve().parent.is_dir():
        raise ConfigError(f"--out: directory {args.out.parent} does not exist")
    wasm, kernel_desc = _load_kernel(args.kernel)
    host = KernelHost(wasm, cfg, sandbox, name=f"org {cfg.org} {args.kernel}")
    # Stream the input unless the oracle needs to see it again.
    items = list(read_payloads(args.input)) if args.oracle else read_payloads(args.input)
    rep = replay(host, items, args.batch, args.flush_lag)
    summary: dict[str, object] = {"org": cfg.org, "kernel": kernel_desc, "input": str(args.input), **rep.summary()}
    if args.oracle:
        from actors import oracle
        from actors.output import output_hash
        from actors.replay import disagreements

        # The oracle sees what the reader accepted; the reader's own refusals count for both.
        ref = oracle.aggregate(cfg, [i for i in items if isinstance(i, bytes)], args.batch, args.flush_lag)
        for item in items:
            if isinstance(item, PayloadError):
                ref.rejected[item.reason] = ref.rejected.get(item.reason, 0) + 1
        summary["oracle_hash"] = output_hash(ref.rows)
        found = disagreements(rep, ref, same_rows=summary["oracle_hash"] == summary["output_hash"])
        summary["oracle_agrees"] = not found
        if found:
            summary["oracle_disagreements"] = found
    if args.out:
        write_rows(args.out, rep.rows)
        summary["out"] = str(args.out)
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>18}: {v}")
    return 0 if summary.get("oracle_agrees", True) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evoagg", description="Multi-tenant time-series aggregation in wasm kernels.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gen", help="write synthetic traffic for a workload")
    g.add_argument("--workload", type=Path, required=True, help="workload YAML (configs/workloads/w1.yaml)")
    g.add_argument("--messages", type=int, default=2000)
    g.add_argument("--seed", type=int, default=None, help="overrides the workload's seed")
    g.add_argument("--out", type=Path, required=True, help="traffic.bin (binary stream) or traffic.jsonl")
    g.set_defaults(fn=_gen)
    r = sub.add_parser("replay", help="run a traffic file through a kernel and write the aggregated rows")
    r.add_argument("--config", type=Path, required=True, help="tenant YAML (configs/tenants/<org>.yaml)")
    r.add_argument("--input", type=Path, required=True, help=".bin or .jsonl traffic")
    r.add_argument("--kernel", default="generic", help="'generic' or a path to a .wasm module")
    r.add_argument("--out", type=Path, help="rows to .parquet, .csv or .jsonl")
    r.add_argument("--batch", type=int, default=64, help="messages per kernel call")
    r.add_argument(
        "--flush-lag",
        type=int,
        metavar="SECONDS",
        help="after each batch, flush buckets ending at or before (largest timestamp seen - SECONDS); "
        "later points for them count as late (default: flush only at the end)",
    )
    r.add_argument("--sandbox", type=Path, help="sandbox limits YAML (configs/sandbox.yaml)")
    r.add_argument("--oracle", action="store_true", help="also run the reference oracle and compare hashes (slow)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.set_defaults(fn=_replay)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except (ConfigError, StreamError) as e:
        print(f"evoagg: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"evoagg: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (BuildFailed, ModuleRejected, KernelError, EvoaggError) as e:
        print(f"evoagg: failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

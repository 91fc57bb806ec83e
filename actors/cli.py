"""The ``evoagg`` command line: ``gen``, ``replay``, ``specialize``, ``verify``, ``bench``, ``evolve``, ``keygen``,
``prebuild``, ``demo``, ``serve``, ``status``.

Exit codes: 0 success, 1 a runtime failure (a kernel trapped, a build failed, a
candidate was rejected, outputs differ), 2 bad usage or bad input files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from actors.config import SandboxConfig
from actors.errors import BuildFailed, ConfigError, EvoaggError, KernelError, ModuleRejected, PayloadError, StreamError


def _gen(args: argparse.Namespace) -> int:
    from actors.loading import load_workload
    from actors.payload import write_stream
    from actors.workload import generate

    wl = _timed_workload(load_workload(args.workload), args.timing)
    if args.messages < 0:
        raise ConfigError("--messages must be >= 0")
    t0 = time.perf_counter()
    n = write_stream(args.out, generate(wl, args.messages, args.seed))
    print(f"wrote {n} messages of workload {wl.name} (org {wl.tenant.org}) to {args.out} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


def _timed_workload(wl: Any, timing: str | None) -> Any:
    """The workload with its traffic's timing replaced when ``--timing`` is given."""
    if timing is None:
        return wl
    return replace(wl, traffic=replace(wl.traffic, timing=timing).validate())


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


def _messages(cfg_org: int, path: Path | None) -> list[bytes] | None:
    from actors.payload import read_payloads

    if path is None:
        return None
    items = [i for i in read_payloads(path) if isinstance(i, bytes)]
    if not items:
        raise ConfigError(f"{path}: no readable message")
    return items


def _sandbox_or_default(path: Path | None) -> SandboxConfig:
    from actors.loading import load_sandbox

    return load_sandbox(path or Path(__file__).resolve().parents[1] / "configs" / "sandbox.yaml")


def _start_ray(address: str | None) -> None:
    """Joins ``address``, or starts a local Ray with the two CPUs a laptop run budgets for."""
    import ray

    ray.init(address=address, num_cpus=None if address else 2, include_dashboard=False, log_to_driver=False)


def _specialize(args: argparse.Namespace) -> int:
    from actors.kernel.build import build
    from actors.kernel.host import KernelHost
    from actors.loading import load_tenant
    from actors.output import output_hash
    from actors.replay import replay
    from actors.specialize import EVOLVABLE, materialize, package_name
    from actors.verify.traffic import config_traffic

    cfg = load_tenant(args.config)
    crate = materialize(cfg, args.out)
    res = build(crate, package_name(cfg), on_compile=lambda m: print(f"evoagg: {m}", file=sys.stderr, flush=True))
    (args.out / "kernel.wasm").write_bytes(res.wasm)
    payloads = _messages(cfg.org, args.messages) or config_traffic(cfg, args.seed, args.count)
    generic = build().wasm
    hashes = {name: output_hash(replay(KernelHost(w, cfg, name=name), payloads).rows) for name, w in (("generic", generic), ("specialized", res.wasm))}
    summary = {
        "org": cfg.org,
        "crate": str(args.out),
        "wasm": str(args.out / "kernel.wasm"),
        "wasm_bytes": len(res.wasm),
        "evolvable_file": str(args.out / EVOLVABLE),
        "evolvable_bytes": len((args.out / EVOLVABLE).read_bytes()),
        "build_seconds": round(res.seconds, 2),
        "messages": len(payloads),
        "generic_hash": hashes["generic"],
        "specialized_hash": hashes["specialized"],
        "equal": hashes["generic"] == hashes["specialized"],
    }
    print(json.dumps(summary, indent=None if args.json else 1))
    return 0 if summary["equal"] else 1


def _verify(args: argparse.Namespace) -> int:
    from actors.kernel.build import build
    from actors.loading import load_tenant
    from actors.verify.stages import Candidate, Context, verify
    from actors.verify.traffic import config_traffic

    cfg = load_tenant(args.config)
    if (args.module is None) == (args.source is None):
        raise ConfigError("give exactly one of --module M.wasm and --source DIR")
    if args.module is not None:
        if args.module.suffix != ".wasm":
            raise ConfigError(f"--module: expected a .wasm file, found {args.module}")
        cand = Candidate(args.module.name, cfg, wasm=args.module.read_bytes())
    else:
        if not (args.source / "Cargo.toml").is_file():
            raise ConfigError(f"--source: {args.source} has no Cargo.toml")
        cand = Candidate.from_dir(args.source.name, cfg, args.source)
    sandbox = _sandbox_or_default(args.sandbox)
    generic = build().wasm
    current = args.current.read_bytes() if args.current else generic
    held_back = _messages(cfg.org, args.messages) or config_traffic(cfg, 1_000_003, 300)
    training = _messages(cfg.org, args.training) or config_traffic(cfg, 7, 300)
    from actors.kernel.measure import Regime

    regime = Regime(lateness_s=args.lateness, batch=args.batch).validate()
    ctx = Context(cfg, sandbox, generic, current, tuple(held_back), tuple(training), regime=regime)
    if args.in_process:
        rep = verify(cand, ctx)
    else:
        from actors.verify.tasks import VerifierPool

        _start_ray(args.ray_address)
        rep = VerifierPool(ctx).verify([cand])[0]
    report = rep.to_json()
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"candidate {rep.candidate} (org {rep.org}): {'ACCEPTED' if rep.accepted else 'REJECTED'}")
        for st in rep.stages:
            print(f"  {st.name:<13} {st.status:<8} {st.seconds:>7.2f} s  {st.reason[:150]}")
    return 0 if rep.accepted else 1


def _bench(args: argparse.Namespace) -> int:
    from actors.bench import plot, run_bench
    from actors.loading import load_workload

    wl = _timed_workload(load_workload(args.workload), args.timing)
    if args.live:
        return _bench_live(args, wl)
    if args.messages < 1 or args.rounds < 1:
        raise ConfigError("--messages and --rounds must be >= 1")
    if args.evolved is not None and (args.evolved.suffix != ".wasm" or not args.evolved.is_file()):
        raise ConfigError(f"--evolved: expected an existing .wasm file, found {args.evolved}")
    peers = [] if args.no_peers else ["pyarrow", "polars", "duckdb"]
    log = (lambda m: None) if args.quiet else (lambda m: print(f"evoagg bench: {m}", file=sys.stderr, flush=True))
    report = run_bench(wl, args.messages, args.rounds, args.evolved.read_bytes() if args.evolved else None, peers, log, args.profile)
    if args.plot:
        plot(report, args.plot)
        report["chart"] = str(args.plot)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['workload']} (org {report['org']}): {report['messages']} messages, {report['points']:,} points, median of {report['rounds']} rounds")
        for r in report["results"]:
            print(f"  {r['name']:<12} {r['mode']:<12} {r['msg_per_s'] or 0:>10,.0f} msg/s  {r['agrees_with_oracle']}")
        for k, v in report["ratios"].items():
            print(f"  {k:<34} {v}")
    wrong = [r for r in report["results"] if r["agrees_with_oracle"] != "exact" and r["name"] in ("generic", "specialized", "evolved")]
    return 1 if wrong else 0


def _bench_live(args: argparse.Namespace, wl: Any) -> int:
    import ray

    from actors.live_bench import run_live_bench

    if args.messages < 1000 or args.swaps < 1:
        raise ConfigError("--live needs --messages >= 1000 and --swaps >= 1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = run_live_bench(wl, args.messages, 64, args.swaps, not args.no_kill)
    finally:
        ray.shutdown()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=None if args.json else 1))
    ok = report["checked"]["equal"] and report["accounted"]["sent"] == report["accounted"]["received"] == report["accounted"]["accepted_plus_rejected"]
    return 0 if ok else 1


def _evolve(args: argparse.Namespace) -> int:
    from actors.evolve.settings import EvolutionConfig
    from actors.kernel.build import build
    from actors.loading import load_evolution, load_tenant, load_workload
    from actors.payload import encode
    from actors.verify.stages import Context
    from actors.verify.traffic import config_traffic
    from actors.workload import generate

    if (args.config is None) == (args.workload is None):
        raise ConfigError("give exactly one of --config (traffic derived from it) and --workload (traffic from the workload)")
    cfg = load_workload(args.workload).tenant if args.workload else load_tenant(args.config)
    base = load_evolution(args.evolution) if args.evolution else EvolutionConfig()
    flags = {"islands": args.islands, "generations": args.generations, "children": args.children, "proposer": args.proposer, "seed": args.seed,
             "model": args.model, "max_tokens": args.max_tokens, "max_usd": args.max_usd, "max_seconds": args.max_seconds}  # fmt: skip
    # Flags given on the command line override the file; the file overrides the defaults.
    evo = replace(base, **{k: v for k, v in flags.items() if v is not None}).validate()
    if args.workload:
        wl = load_workload(args.workload)
        training = [encode(m) for m in generate(wl, args.training, seed=wl.traffic.seed + 1)]
        held_back = [encode(m) for m in generate(wl, args.held_back, seed=wl.traffic.seed + 1_000_003)]
    else:
        training, held_back = config_traffic(cfg, 7, args.training), config_traffic(cfg, 1_000_003, args.held_back)
    sandbox = _sandbox_or_default(args.sandbox)
    generic = build().wasm
    ctx = Context(cfg, sandbox, generic, generic, tuple(held_back), tuple(training), regime=evo.regime(args.lateness))
    from actors.evolve.engine import run_evolution

    _start_ray(args.ray_address)
    workdir = args.workdir or Path("out") / f"evolve-{cfg.org}"
    summary = run_evolution(cfg, evo, ctx, workdir, resume=args.resume, log=lambda m: print(f"evoagg evolve: {m}", file=sys.stderr, flush=True))
    summary["workdir"] = str(workdir)
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(summary, indent=1))
    return 0


def _suite(args: argparse.Namespace) -> int:
    from actors.evolve.settings import EvolutionConfig
    from actors.evolve.suite import run_suite, shapes, table
    from actors.kernel.build import build
    from actors.loading import load_evolution

    base = load_evolution(args.evolution) if args.evolution else EvolutionConfig()
    flags = {"islands": args.islands, "generations": args.generations, "children": args.children, "seed": args.seed}
    evo = replace(base, proposer="offline", **{k: v for k, v in flags.items() if v is not None}).validate()
    try:
        paths = shapes(args.dir) if not args.shape else [args.dir / f"{n}.yaml" for n in args.shape]
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"no such shape: {', '.join(str(p) for p in missing)}")
    generic = build().wasm
    _start_ray(args.ray_address)
    result = run_suite(paths, evo, args.workdir, generic, _sandbox_or_default(None), args.lateness, args.training, args.held_back,
                       log=lambda m: print(f"evoagg suite: {m}", file=sys.stderr, flush=True))  # fmt: skip
    print(json.dumps(result) if args.json else table(result))
    return 0


DEMO_TENANTS = ("configs/tenants/1042.yaml", "configs/tenants/2077.yaml")
"""The demo's tenants, relative to the repository root."""


def _prebuild(args: argparse.Namespace) -> int:
    from actors.kernel.prebuild import prebuild
    from actors.loading import load_tenant

    repo = Path(__file__).resolve().parents[1]
    paths = args.tenant if args.tenant is not None else [repo / p for p in DEMO_TENANTS]
    tenants = [load_tenant(p) for p in paths]
    summary = prebuild(tenants, lambda m: print(f"evoagg {m}", file=sys.stderr, flush=True))
    print(json.dumps(summary))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from actors.demo import print_summary, run_demo

    if args.duration < 60 or args.generations < 1 or args.islands < 1:
        raise ConfigError("--duration must be >= 60 s; --generations and --islands >= 1")
    summary = run_demo(args.out, args.duration, args.generations, args.islands, live=not args.json)
    if args.json:
        print(json.dumps({k: summary[k] for k in ("tenants", "rejections_by_reason", "chart")}))
    else:
        print_summary(summary)
    ok = all(t["messages_in"] == t["messages_accounted"] == t["messages_received"] for t in summary["tenants"])
    return 0 if ok else 1


def _serve(args: argparse.Namespace) -> int:
    from actors.control import connect
    from actors.loading import load_evolution, load_shard_settings, load_tenant, load_workload

    options: dict[str, Any] = {"shards": args.shards, "shard_cpus": args.shard_cpus}
    if args.shard_settings:
        options["shard_settings"] = load_shard_settings(args.shard_settings)
    if args.evolution:
        options["evolution"] = load_evolution(args.evolution)
    tenants = [load_tenant(p) for p in args.tenant]
    workloads = [load_workload(p) for p in args.traffic]
    ctl = connect(args.address, root=args.root, **options)
    # Idempotent: a tenant served already with the same config, or a source running
    # already, is left as it is (a second serve, or one on a root that holds a system).
    for t in [*tenants, *(w.tenant for w in workloads if w.tenant.org not in {t.org for t in tenants})]:
        what = ctl.add_tenant(t)["admitted"]
        print(f"evoagg serve: org {t.org}: {'serving' if what == 'add' else 'served already (' + what + ')'}", file=sys.stderr)
    running = ctl.traffic()
    for w in workloads:
        if w.tenant.org in running and running[w.tenant.org].get("running"):
            print(f"evoagg serve: org {w.tenant.org}: traffic runs already", file=sys.stderr)
            continue
        print(f"evoagg serve: {ctl.start_traffic(w.tenant.org, w)}", file=sys.stderr)
    for org in args.evolve:
        print(f"evoagg serve: {ctl.evolve(org)}", file=sys.stderr)
    print(json.dumps(ctl.status()["mapping"]))
    return 0


def _status(args: argparse.Namespace) -> int:
    from actors.control import connect

    st = connect(args.address, start=False).status()
    if args.json:
        print(json.dumps(st, default=str))
        return 0
    if not st["registry"]["reachable"]:
        print(f"registry: UNREACHABLE ({st['registry']['error']})")
    for name, sh in st["shards"].items():
        if not sh["reachable"]:
            print(f"{name}: UNREACHABLE ({sh['error']}); orgs {sh['orgs']}")
            continue
        print(f"{name}: orgs {sh['orgs']}, {sh['batches']} batches, recovered {sh['recovery']}")
    for org, t in sorted(st["tenants"].items()):
        imp = t.get("improvement") or {}
        if not t["reachable"]:
            print(f"org {org} on {t['shard']}: UNREACHABLE ({t['error']}); registry's latest v{t['latest_version'] or '?'}; {imp.get('stage', '')}")
            continue
        print(
            f"org {org} on {t['shard']}: v{t['module']['version']} {t['module']['origin']}, {t['msg_per_s']:.0f} msg/s "
            f"(capacity {t['capacity_msg_per_s'] or 0:,.0f}), {t['messages_received']} received, rejected {t['rejected']}, "
            f"swaps {t['swaps']}, rollbacks {t['rollbacks']}; {imp.get('stage', '')}"
        )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from actors.signing import Signer, keygen

    key, pub = keygen(args.out, args.name)
    print(f"private key: {key} (mode 0600; keep it secret, give it to the registry only)")
    print(f"public key:  {pub} (give it to the shards' trust stores)")
    print(f"key id:      {Signer.load(key).key_id}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evoagg", description="Multi-tenant time-series aggregation in wasm kernels.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gen", help="write synthetic traffic for a workload")
    g.add_argument("--workload", type=Path, required=True, help="workload YAML (configs/workloads/w1.yaml)")
    g.add_argument("--messages", type=int, default=2000)
    g.add_argument("--seed", type=int, default=None, help="overrides the workload's seed")
    g.add_argument("--out", type=Path, required=True, help="traffic.bin (binary stream) or traffic.jsonl")
    g.add_argument(
        "--timing",
        choices=["live", "history"],
        help="live: recent points, as agents send (the workload's default); history: batch-like backfill, for replay benchmarks",
    )
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
    s = sub.add_parser("specialize", help="write a tenant's specialized kernel crate, build it, and compare it with the generic kernel")
    s.add_argument("--config", type=Path, required=True, help="tenant YAML")
    s.add_argument("--out", type=Path, required=True, help="directory for the crate and kernel.wasm")
    s.add_argument("--messages", type=Path, help="traffic to compare on (default: traffic derived from the config)")
    s.add_argument("--count", type=int, default=300, help="messages of derived traffic")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--json", action="store_true", help="one-line JSON")
    s.set_defaults(fn=_specialize)
    v = sub.add_parser("verify", help="run the verification pipeline on a candidate kernel; JSON report; exit 0 accepted, 1 rejected")
    v.add_argument("--config", type=Path, required=True, help="tenant YAML")
    v.add_argument("--module", type=Path, help="a candidate .wasm (no source: proofs are not-run)")
    v.add_argument("--source", type=Path, help="a candidate crate directory (as evoagg specialize writes it)")
    v.add_argument("--messages", type=Path, help="held-back messages for the shadow stage (default: derived from the config, unseen seed)")
    v.add_argument("--training", type=Path, help="messages for the bench stage (default: derived from the config)")
    v.add_argument("--current", type=Path, help="the module serving now, to bench against (default: the generic kernel)")
    v.add_argument("--sandbox", type=Path, help="sandbox limits YAML (default configs/sandbox.yaml)")
    v.add_argument("--lateness", type=int, default=60, help="bench stage: the shard's allowed lateness, seconds (its flush schedule; default 60)")
    v.add_argument("--batch", type=int, default=64, help="bench stage: messages per kernel call, as the shard's traffic arrives (default 64)")
    v.add_argument("--in-process", action="store_true", help="run the stages here instead of as Ray tasks")
    v.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    v.add_argument("--report", type=Path, help="also write the JSON report to this file")
    v.add_argument("--json", action="store_true", help="print the report as one-line JSON (default: a table)")
    v.set_defaults(fn=_verify)
    b = sub.add_parser("bench", help="kernels vs pyarrow, Polars, DuckDB and the oracle on one workload; JSON")
    b.add_argument("--workload", type=Path, required=True, help="workload YAML")
    b.add_argument("--messages", type=int, default=200)
    b.add_argument("--rounds", type=int, default=3, help="interleaved rounds; results are medians")
    b.add_argument("--timing", choices=["live", "history"], help="the traffic's timing (default: the workload's, live); history is labelled as such")
    b.add_argument("--evolved", type=Path, help="an evolved .wasm for the tenant, benchmarked too")
    b.add_argument("--no-peers", action="store_true", help="kernels and oracle only")
    b.add_argument("--plot", type=Path, help="PNG bar chart")
    b.add_argument("--profile", action="store_true", help="also profile the specialized kernel by phase (µs/message)")
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")
    b.add_argument("--out", type=Path, help="also write the JSON to this file")
    b.add_argument("--json", action="store_true", help="print the JSON (default: a table)")
    b.add_argument("--live", action="store_true", help="a shard on Ray under traffic: swap pauses, msg/s during swaps, recovery after a kill (JSON)")
    b.add_argument("--swaps", type=int, default=10, help="with --live: swaps to measure")
    b.add_argument("--no-kill", action="store_true", help="with --live: do not kill the shard")
    b.set_defaults(fn=_bench)

    pb = sub.add_parser("prebuild", help="compile what a cold cache lacks (core and alloc per build slot, kernels, codec proofs) before a timed job; JSON")
    pb.add_argument("--tenant", type=Path, action="append", help="tenant config YAML to build a kernel for (repeatable; default: the demo's two tenants)")
    pb.set_defaults(fn=_prebuild)

    d = sub.add_parser("demo", help="the main job: two tenants served, improved and hot-swapped under traffic; live view, summary, chart")
    d.add_argument(
        "--duration",
        type=float,
        default=900.0,
        help="at most this many seconds (default 900); the demo ends sooner, once every tenant has been through specialization "
        "and --generations generations and its final module has served 40 s",
    )
    d.add_argument("--generations", type=int, default=3, help="evolution generations per tenant (default 3)")
    d.add_argument("--islands", type=int, default=2)
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="state, chart (demo.png) and summary (demo.json)")
    d.add_argument("--json", action="store_true", help="print the summary as JSON (no live view)")
    d.set_defaults(fn=_demo)

    sv = sub.add_parser("serve", help="start (or join) the long-running system on a Ray cluster: registry, shards, tenants, traffic")
    sv.add_argument("--address", default="auto", help="Ray address: auto, ray://head:10001 (default auto)")
    sv.add_argument("--root", type=Path, default=Path("evoagg-state"), help="keys, registry, shard state and sink (shared storage on a cluster)")
    sv.add_argument("--shards", type=int, default=2)
    sv.add_argument("--shard-cpus", type=float, default=1.0)
    sv.add_argument("--shard-settings", type=Path, help="shard settings YAML (configs/shard.yaml)")
    sv.add_argument("--evolution", type=Path, help="evolution settings YAML (configs/evolution.yaml)")
    sv.add_argument("--tenant", type=Path, action="append", default=[], help="tenant config YAML (repeatable)")
    sv.add_argument("--traffic", type=Path, action="append", default=[], help="workload YAML to generate traffic from (repeatable)")
    sv.add_argument("--evolve", type=int, action="append", default=[], help="org to improve at once (repeatable)")
    sv.set_defaults(fn=_serve)

    st = sub.add_parser("status", help="the running system's status (tenants, shards, modules, evolution, throughput)")
    st.add_argument("--address", default="auto")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=_status)
    e = sub.add_parser("evolve", help="evolve a tenant's kernel on Ray: islands, verified candidates, git lineage; JSON summary")
    e.add_argument("--config", type=Path, help="tenant YAML (traffic derived from the config)")
    e.add_argument("--workload", type=Path, help="workload YAML (its tenant; training and held-back traffic from it, different seeds)")
    e.add_argument("--generations", type=int)
    e.add_argument("--islands", type=int)
    e.add_argument("--children", type=int, help="candidates per island per generation")
    e.add_argument("--proposer", choices=["offline", "anthropic"])
    e.add_argument("--model", help="Anthropic model (anthropic proposer)")
    e.add_argument("--max-tokens", type=int, help="token budget of the run (anthropic)")
    e.add_argument("--max-usd", type=float, help="USD budget of the run (anthropic)")
    e.add_argument("--max-seconds", type=float, help="wall-time budget of the anthropic proposer")
    e.add_argument("--seed", type=int)
    e.add_argument("--evolution", type=Path, help="evolution settings YAML (configs/evolution.yaml); flags override it")
    e.add_argument("--training", type=int, default=200, help="training messages (the bench stage's)")
    e.add_argument("--held-back", type=int, default=200, help="held-back messages (the shadow stage's; never shown to proposers)")
    e.add_argument("--lateness", type=int, default=60, help="the shard's allowed lateness the fitness is measured with, seconds (default 60)")
    e.add_argument("--workdir", type=Path, help="candidates.sqlite and lineage/ (default out/evolve-<org>)")
    e.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    e.add_argument("--sandbox", type=Path)
    e.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    e.add_argument("--json", action="store_true", help="one-line JSON summary")
    e.set_defaults(fn=_evolve)
    su = sub.add_parser("suite", help="the generalisation suite: an offline evolution per synthetic tenant shape, evolved vs specialized vs generic")
    suite_dir = Path(__file__).resolve().parents[1] / "configs" / "workloads" / "suite"
    su.add_argument("--dir", type=Path, default=suite_dir, help="directory of shape workload YAMLs")
    su.add_argument("--shape", action="append", help="only this shape (file stem; repeatable)")
    su.add_argument("--generations", type=int)
    su.add_argument("--islands", type=int)
    su.add_argument("--children", type=int, help="candidates per island per generation")
    su.add_argument("--seed", type=int)
    su.add_argument("--evolution", type=Path, help="evolution settings YAML; flags override it (the proposer is always offline)")
    su.add_argument("--training", type=int, default=200, help="training messages per shape")
    su.add_argument("--held-back", type=int, default=200, help="held-back messages per shape")
    su.add_argument("--lateness", type=int, default=60, help="allowed lateness of the fitness regime, seconds")
    su.add_argument("--workdir", type=Path, default=Path("out/suite"), help="one evolution workdir per shape under it")
    su.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    su.add_argument("--json", action="store_true", help="one-line JSON instead of the table")
    su.set_defaults(fn=_suite)
    k = sub.add_parser("keygen", help="write a new Ed25519 signing key for the module registry (<name>.key, 0600) and its public key (<name>.pub)")
    k.add_argument("--out", type=Path, required=True, help="directory for the key files (created if missing)")
    k.add_argument("--name", default="evoagg", help="file name stem (default evoagg)")
    k.set_defaults(fn=_keygen)
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

"""The control API from Ray client sessions: a local head started by the test (with
Ray's token authentication as it comes), one session that builds the system and sends
traffic, a second session that finds the same system by name and reads it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def head(generic_wasm: bytes) -> Iterator[str]:
    gcs, client = _free_port(), _free_port()
    # The head as `ray start` brings it up: token mode on by default. An explicit
    # RAY_AUTH_MODE=token (which an earlier ray.init() in this process leaves in os.environ)
    # makes its Ray Client server fail to start sessions (Ray 2.60.0).
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [RAY, "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--num-cpus=2", "--include-dashboard=false",
         "--min-worker-port=41000", "--max-worker-port=41999", "--disable-usage-stats"],
        # Not a pipe: the daemons it starts inherit it, and would write into a closed one.
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    try:
        yield f"ray://127.0.0.1:{client}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def session(address: str, body: str, tmp: Path) -> dict[str, object]:
    """Runs ``body`` in a fresh Python process attached to the cluster as a Ray client."""
    script = tmp / "session.py"
    script.write_text(
        "import json, sys\nimport actors\n"
        + f"ctl = actors.connect({address!r}, root={str(tmp / 'state')!r}, shards=1, shard_cpus=0.5)\n"
        + textwrap.dedent(body)
    )
    # Token authentication: the client must be in token mode from the start (Ray reads it once).
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_two_client_sessions_drive_and_see_the_same_system(head: str, tmp_path: Path) -> None:
    first = session(
        head,
        """
        from actors.loading import load_workload
        from actors.payload import encode
        from actors.workload import generate
        from pathlib import Path
        wl = load_workload(Path("configs/workloads/w1.yaml"))
        ctl.add_tenant("configs/tenants/1042.yaml")
        payloads = [encode(m) for m in generate(wl, 96, 3)]
        acks = [ctl.ingest(1042, payloads[i:i + 32], source="test") for i in range(0, 96, 32)]
        st = ctl.status()["tenants"][1042]
        print(json.dumps({"acked": sum(a["accepted"] for a in acks), "received": st["messages_received"], "version": st["module"]["version"]}))
        """,
        tmp_path,
    )
    assert first == {"acked": 96, "received": 96, "version": 1}
    second = session(
        head,
        """
        st = ctl.status()
        mods = ctl.modules(1042)
        print(json.dumps({"orgs": sorted(st["tenants"]), "received": st["tenants"][1042]["messages_received"],
                          "modules": [[m["manifest"]["version"], m["manifest"]["origin"], m["status"]] for m in mods]}))
        ctl.shutdown()
        """,
        tmp_path,
    )
    assert second == {"orgs": [1042], "received": 96, "modules": [[1, "generic", "ok"]]}

"""The control API from Ray client sessions: a local head started by the test as the
cluster configs start theirs (token authentication on), one session that builds the
system and sends traffic, a second session that finds the same system by name and reads it."""

from __future__ import annotations

import json
import os
import secrets
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


WORKER_PORTS = (41000, 41999)


def _free_port() -> int:
    """A free port outside the workers' range (``ray start`` refuses a port inside it, and the
    kernel's ephemeral ports, 32768-60999, include that range)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not WORKER_PORTS[0] <= port <= WORKER_PORTS[1]:
            return port


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's shared secret, in a file of its own (not the user's ~/.ray/auth_token)."""
    path = tmp_path_factory.mktemp("auth") / "auth_token"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def head(generic_wasm: bytes, token: Path) -> Iterator[str]:
    gcs, client = _free_port(), _free_port()
    # The head as the cluster configs start it: token mode on (explicit here, so the test does
    # not depend on Ray's default) and gRPC's fork handlers off (README: the Ray Client server
    # forks a process per session, which with them on sometimes dies at birth).
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "GRPC_ENABLE_FORK_SUPPORT": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [RAY, "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--num-cpus=2", "--include-dashboard=false",
         f"--min-worker-port={WORKER_PORTS[0]}", f"--max-worker-port={WORKER_PORTS[1]}", "--disable-usage-stats"],
        # Not a pipe: the daemons it starts inherit it, and would write into a closed one.
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    try:
        yield f"ray://127.0.0.1:{client}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _client_server_logs() -> str:
    """The head's Ray Client server logs (where a session that failed to start says why)."""
    logs = Path("/tmp/ray/session_latest/logs")
    parts = [f"\n== {f.name}\n{f.read_text(errors='replace')[-1500:]}" for f in sorted(logs.glob("ray_client_server*.err"))]
    return "".join(parts)


def client(script: Path, token: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in a fresh Python process as a Ray client holding ``token``: in token
    mode from the start (Ray reads RAY_AUTH_MODE once, when it is imported)."""
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=600, env=env)


def session(address: str, body: str, tmp: Path, token: Path) -> dict[str, object]:
    """Runs ``body`` in a client session attached to the system through ``actors.connect``."""
    script = tmp / "session.py"
    script.write_text(
        "import json, sys\nimport actors\n"
        + f"ctl = actors.connect({address!r}, root={str(tmp / 'state')!r}, shards=1, shard_cpus=0.5)\n"
        + textwrap.dedent(body)
    )
    proc = client(script, token)
    assert proc.returncode == 0, proc.stderr[-3000:] + _client_server_logs()
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_client_without_the_clusters_token_is_refused(head: str, token: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    wrong.chmod(0o600)
    script = tmp_path / "attach.py"
    script.write_text(
        "import actors\nfrom actors.errors import ConfigError\n"
        f"try:\n    actors.connect({head!r}, root={str(tmp_path / 'state')!r}, start=False)\n    print('attached')\n"
        "except ConfigError:\n    print('attached; no control plane yet')\n"
    )
    refused = client(script, wrong)
    assert refused.returncode != 0 and "attached" not in refused.stdout
    assert "ConnectionError" in refused.stderr, refused.stderr[-2000:]
    # The control: the same script, the same head, the cluster's token.
    allowed = client(script, token)
    assert allowed.returncode == 0 and "attached" in allowed.stdout, allowed.stderr[-2000:] + _client_server_logs()


def test_two_client_sessions_drive_and_see_the_same_system(head: str, token: Path, tmp_path: Path) -> None:
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
        token,
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
        token,
    )
    assert second == {"orgs": [1042], "received": 96, "modules": [[1, "generic", "ok"]]}

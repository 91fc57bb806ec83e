"""The registry's state on real files with real keys: versions, persistence, revocation,
what a load refuses, and who is told about what."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.errors import ConfigError, ModuleRejected
from actors.registry_state import RegistryState, Subscriptions, report_digest
from actors.signing import SignedManifest, Signer, TrustStore

SIGNER = Signer.generate()
CFG_A = hashlib.sha256(b"config a").hexdigest()
CFG_B = hashlib.sha256(b"config b").hexdigest()
ACCEPTED = {"accepted": True, "candidate": "c1", "stages": [{"name": "shadow", "status": "passed"}]}


def ticking(start: float = 1_700_000_000.0) -> Callable[[], float]:
    t = itertools.count()
    return lambda: start + next(t)


def wasm(tag: str) -> bytes:
    return b"\0asm\x01\0\0\0" + tag.encode()


def state(root: Path, signer: Signer = SIGNER, trusted_previous: TrustStore | None = None) -> RegistryState:
    return RegistryState(root, signer, ticking(), trusted_previous)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_versions_increase_per_tenant_independently(tmp_path: Path) -> None:
    reg = state(tmp_path)
    got = [
        reg.publish(1042, CFG_A, wasm("a1"), origin="generic"),
        reg.publish(1042, CFG_A, wasm("a2"), origin="specialized"),
        reg.publish(2077, CFG_A, wasm("a1"), origin="generic"),
        reg.publish(1042, CFG_B, wasm("b1"), origin="generic"),
        reg.publish(1042, CFG_A, wasm("a3"), origin="evolved gen 1", ratio=1.4, parent="v2", source_commit="abc"),
    ]
    assert [(s.manifest.org, s.manifest.config_hash, s.manifest.version) for s in got] == [
        (1042, CFG_A, 1),
        (1042, CFG_A, 2),
        (2077, CFG_A, 1),
        (1042, CFG_B, 1),
        (1042, CFG_A, 3),
    ]
    assert reg.tenants() == sorted([(1042, CFG_A), (2077, CFG_A), (1042, CFG_B)])
    assert [e.signed.manifest.version for e in reg.versions(1042, CFG_A)] == [1, 2, 3]
    assert reg.latest(1042, CFG_A) == got[4] and reg.latest(9, CFG_A) is None
    assert got[1].manifest.created_at < got[4].manifest.created_at
    signed, data = reg.get(1042, CFG_A, 2)
    assert signed == got[1] and data == wasm("a2")
    assert "1042-" + CFG_A[:16] in {p.name for p in tmp_path.iterdir()}


def test_a_new_state_on_the_same_root_serves_the_same(tmp_path: Path) -> None:
    reg = state(tmp_path)
    for i in range(3):
        reg.publish(1042, CFG_A, wasm(f"m{i}"), origin="evolved", report=ACCEPTED, ratio=1.0 + i)
    reg.mark_bad(1042, CFG_A, 3, "shadow disagreed", "shard-1")
    again = state(tmp_path)
    assert again.tenants() == reg.tenants()
    assert again.versions(1042, CFG_A) == reg.versions(1042, CFG_A)
    for v in (1, 2, 3):
        assert again.get(1042, CFG_A, v) == reg.get(1042, CFG_A, v)
    assert again.latest(1042, CFG_A) == reg.latest(1042, CFG_A)
    assert again.is_bad(1042, CFG_A, 3) and not again.is_bad(1042, CFG_A, 2)


def test_mark_bad_persists_and_latest_skips_bad_versions(tmp_path: Path) -> None:
    reg = state(tmp_path)
    v1 = reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    reg.publish(1042, CFG_A, wasm("2"), origin="evolved")
    assert reg.mark_bad(1042, CFG_A, 2, "trapped on live traffic", "shard-7") is True
    assert reg.mark_bad(1042, CFG_A, 2, "again", "shard-8") is False
    assert reg.latest(1042, CFG_A) == v1
    entry = state(tmp_path).versions(1042, CFG_A)[1]
    assert (entry.status, entry.bad_reason, entry.bad_reporter) == ("bad", "trapped on live traffic", "shard-7")
    assert entry.bad_at is not None
    reg.mark_bad(1042, CFG_A, 1, "also bad", "operator")
    assert reg.latest(1042, CFG_A) is None
    with pytest.raises(ConfigError):
        reg.mark_bad(1042, CFG_A, 9, "no such", "x")


def test_versions_are_not_reused_after_bad(tmp_path: Path) -> None:
    reg = state(tmp_path)
    reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    reg.publish(1042, CFG_A, wasm("2"), origin="evolved")
    reg.mark_bad(1042, CFG_A, 2, "bad", "shard")
    assert reg.publish(1042, CFG_A, wasm("3"), origin="evolved").manifest.version == 3
    assert state(tmp_path).publish(1042, CFG_A, wasm("4"), origin="evolved").manifest.version == 4


def test_publishing_the_same_bytes_again_returns_the_same_version(tmp_path: Path) -> None:
    reg = state(tmp_path)
    first = reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    assert reg.publish(1042, CFG_A, wasm("1"), origin="generic") == first
    assert len(reg.versions(1042, CFG_A)) == 1
    reg.mark_bad(1042, CFG_A, 1, "bad", "shard")
    with pytest.raises(ModuleRejected) as e:
        reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    assert e.value.reason == "revoked"


def test_a_report_must_say_accepted(tmp_path: Path) -> None:
    reg = state(tmp_path)
    for report in ({"accepted": False}, {"candidate": "c"}, {"accepted": "true"}, {"accepted": 1}):
        with pytest.raises(ModuleRejected) as e:
            reg.publish(1042, CFG_A, wasm("x"), origin="evolved", report=report)
        assert e.value.reason == "not_verified"
    assert files(tmp_path) == []
    signed = reg.publish(1042, CFG_A, wasm("x"), origin="evolved", report=ACCEPTED)
    assert signed.manifest.report_digest == report_digest(ACCEPTED) == hashlib.sha256(json.dumps(ACCEPTED, sort_keys=True).encode()).hexdigest()
    assert reg.publish(1042, CFG_A, wasm("y"), origin="generic").manifest.report_digest is None


def test_invalid_input_writes_nothing(tmp_path: Path) -> None:
    reg = state(tmp_path)
    for ch, org, ratio in (("../../etc/passwd", 1, None), (CFG_A.upper(), 1, None), (CFG_A, -1, None), (CFG_A, 1, float("nan"))):
        with pytest.raises(ModuleRejected) as e:
            reg.publish(org, ch, wasm("x"), origin="generic", ratio=ratio)
        assert e.value.reason == "bad_manifest"
    assert list(tmp_path.iterdir()) == []


def test_a_corrupted_module_on_disk_stops_the_load(tmp_path: Path) -> None:
    reg = state(tmp_path)
    reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    path = tmp_path / f"1042-{CFG_A[:16]}" / "v000001.wasm"
    path.write_bytes(wasm("2"))
    with pytest.raises(ConfigError, match=r"v000001\.json.*sha256_mismatch"):
        state(tmp_path)
    with pytest.raises(ConfigError, match="sha256_mismatch"):
        reg.get(1042, CFG_A, 1)  # the running state checks the bytes it serves, too


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["manifest"].update(ratio=99.0),
        lambda d: d["manifest"].update(version=2),
        lambda d: d.update(status="maybe"),
        lambda d: d.update(bad_reason="ok but with a reason"),
        lambda d: d.pop("bad_at"),
        lambda d: d.update(signature="00" * 64),
    ],
)
def test_a_tampered_manifest_on_disk_stops_the_load(tmp_path: Path, tamper: Callable[[dict[str, Any]], None]) -> None:
    state(tmp_path).publish(1042, CFG_A, wasm("1"), origin="generic", ratio=1.5)
    path = tmp_path / f"1042-{CFG_A[:16]}" / "v000001.json"
    d = json.loads(path.read_text())
    tamper(d)
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"v000001\.json"):
        state(tmp_path)


def test_unparsable_json_and_a_missing_module_stop_the_load(tmp_path: Path) -> None:
    state(tmp_path).publish(1042, CFG_A, wasm("1"), origin="generic")
    d = tmp_path / f"1042-{CFG_A[:16]}"
    (d / "v000001.wasm").unlink()
    with pytest.raises(ConfigError, match="missing"):
        state(tmp_path)
    (d / "v000001.json").write_text("{")
    (d / "v000001.wasm").write_bytes(wasm("1"))
    with pytest.raises(ConfigError, match=r"v000001\.json"):
        state(tmp_path)


def test_a_manifest_moved_to_another_version_stops_the_load(tmp_path: Path) -> None:
    reg = state(tmp_path)
    reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    d = tmp_path / f"1042-{CFG_A[:16]}"
    (d / "v000001.json").rename(d / "v000002.json")
    (d / "v000001.wasm").rename(d / "v000002.wasm")
    with pytest.raises(ConfigError, match="not its place"):
        state(tmp_path)


def test_entries_signed_by_an_unknown_key_stop_the_load(tmp_path: Path) -> None:
    old = Signer.generate()
    state(tmp_path, old).publish(1042, CFG_A, wasm("1"), origin="generic")
    with pytest.raises(ConfigError, match="untrusted_key"):
        state(tmp_path, SIGNER)


def test_key_rotation_keeps_old_versions_valid(tmp_path: Path) -> None:
    old = Signer.generate()
    v1 = state(tmp_path, old).publish(1042, CFG_A, wasm("1"), origin="generic")
    reg = state(tmp_path, SIGNER, TrustStore([old.public_raw]))
    v2 = reg.publish(1042, CFG_A, wasm("2"), origin="evolved")
    assert (v1.key_id, v2.key_id) == (old.key_id, SIGNER.key_id)
    assert reg.get(1042, CFG_A, 1)[0] == v1 and reg.latest(1042, CFG_A) == v2
    # A revocation rewrites only the status: the old key's signature stays as it was.
    reg.mark_bad(1042, CFG_A, 1, "old", "operator")
    assert state(tmp_path, SIGNER, TrustStore([old.public_raw])).versions(1042, CFG_A)[0].signed == v1


def test_an_orphan_module_is_deleted_on_load_and_its_number_reused(tmp_path: Path) -> None:
    reg = state(tmp_path)
    reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    d = tmp_path / f"1042-{CFG_A[:16]}"
    (d / "v000002.wasm").write_bytes(wasm("crashed before its manifest"))
    again = state(tmp_path)
    assert not (d / "v000002.wasm").exists()
    assert [e.signed.manifest.version for e in again.versions(1042, CFG_A)] == [1]
    assert again.publish(1042, CFG_A, wasm("2"), origin="evolved").manifest.version == 2
    assert again.get(1042, CFG_A, 2)[1] == wasm("2")


def test_an_interrupted_write_leaves_a_temp_file_that_the_load_removes(tmp_path: Path) -> None:
    reg = state(tmp_path)
    reg.publish(1042, CFG_A, wasm("1"), origin="generic")
    d = tmp_path / f"1042-{CFG_A[:16]}"
    (d / ".tmp-v000002.json.abc123").write_text("{half")
    state(tmp_path)
    assert files(tmp_path) == [f"{d.name}/v000001.json", f"{d.name}/v000001.wasm"]


def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    reg = state(tmp_path)
    for i in range(3):
        reg.publish(1042, CFG_A, wasm(str(i)), origin="generic")
    reg.mark_bad(1042, CFG_A, 2, "bad", "shard")
    d = f"1042-{CFG_A[:16]}"
    assert files(tmp_path) == [f"{d}/v00000{v}.{ext}" for v in (1, 2, 3) for ext in ("json", "wasm")]


def test_an_empty_tenant_directory_and_foreign_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / f"1042-{CFG_A[:16]}").mkdir()
    (tmp_path / "README").write_text("not ours")
    (tmp_path / "notes").mkdir()
    reg = state(tmp_path)
    assert reg.tenants() == []
    assert reg.publish(1042, CFG_A, wasm("1"), origin="generic").manifest.version == 1


def test_unknown_versions_are_config_errors(tmp_path: Path) -> None:
    reg = state(tmp_path)
    with pytest.raises(ConfigError):
        reg.get(1042, CFG_A, 1)
    with pytest.raises(ConfigError):
        reg.is_bad(1042, CFG_A, 1)


class FakePeer:
    """A subscriber that records what it is told; may fail or be gone."""

    def __init__(self, fails: bool = False) -> None:
        self.offers: list[tuple[dict[str, Any], list[Any]]] = []
        self.revokes: list[tuple[int, str, int, str]] = []
        self.fails = fails
        self.gone = False

    def offer(self, signed: dict[str, Any], module_ref: list[Any]) -> None:
        if self.fails:
            raise RuntimeError("connection refused")
        self.offers.append((signed, module_ref))

    def revoke(self, org: int, config_hash: str, version: int, reason: str) -> None:
        if self.fails:
            raise RuntimeError("connection refused")
        self.revokes.append((org, config_hash, version, reason))

    def alive(self) -> bool:
        return not self.gone


def signed_for(org: int, tmp_path: Path) -> SignedManifest:
    return state(tmp_path / str(org)).publish(org, CFG_A, wasm(str(org)), origin="generic")


def test_subscribers_get_their_orgs_pushes_only(tmp_path: Path) -> None:
    log: list[str] = []
    subs = Subscriptions(log.append)
    a, b, c = FakePeer(), FakePeer(), FakePeer()
    subs.subscribe("a", a, [1042])
    subs.subscribe("b", b, [1042, 2077])
    subs.subscribe("c", c, [2077])
    s1042, s2077 = signed_for(1042, tmp_path), signed_for(2077, tmp_path)
    assert subs.offer(s1042, ["ref-1042"]) == ["a", "b"]
    assert subs.offer(s2077, ["ref-2077"]) == ["b", "c"]
    assert a.offers == [(s1042.to_dict(), ["ref-1042"])]
    assert [o[0]["manifest"]["org"] for o in b.offers] == [1042, 2077]
    assert SignedManifest.from_dict(c.offers[0][0]) == s2077
    assert subs.revoke(2077, CFG_A, 1, "bad") == ["b", "c"]
    assert a.revokes == [] and c.revokes == [(2077, CFG_A, 1, "bad")]
    assert log == []


def test_resubscribing_replaces_and_unsubscribing_stops(tmp_path: Path) -> None:
    subs = Subscriptions(lambda m: None)
    old, new = FakePeer(), FakePeer()
    subs.subscribe("s", old, [1042])
    subs.subscribe("s", new, [2077])
    assert subs.recipients(1042) == [] and subs.recipients(2077) == ["s"]
    subs.offer(signed_for(2077, tmp_path), ["r"])
    assert (len(old.offers), len(new.offers)) == (0, 1)
    assert subs.unsubscribe("s") is True and subs.unsubscribe("s") is False
    assert subs.offer(signed_for(2077, tmp_path / "again"), ["r"]) == []


def test_a_failing_or_dead_subscriber_does_not_stop_the_others(tmp_path: Path) -> None:
    log: list[str] = []
    subs = Subscriptions(log.append)
    broken, dead, fine = FakePeer(fails=True), FakePeer(), FakePeer()
    for name, peer in (("broken", broken), ("dead", dead), ("fine", fine)):
        subs.subscribe(name, peer, [1042])
    s = signed_for(1042, tmp_path)
    assert subs.offer(s, ["r"]) == ["dead", "fine"]
    assert any("broken" in m and "failed" in m for m in log)
    dead.gone = True
    assert subs.revoke(1042, CFG_A, 1, "bad") == ["fine"]
    assert subs.names() == ["broken", "fine"] and any("dead is gone" in m for m in log)


def test_the_report_digest_is_the_reports_own(tmp_path: Path) -> None:
    from actors.verify.stages import Report, StageResult

    rep = Report("c1", 1042, True, (StageResult("shadow", "passed", "equal", 0.5),), "ab" * 32, None, 1000.0, 800.0, 1.25)
    signed = state(tmp_path).publish(1042, CFG_A, wasm("1"), origin="evolved", report=rep.to_json(), ratio=rep.ratio)
    assert signed.manifest.report_digest == rep.digest()

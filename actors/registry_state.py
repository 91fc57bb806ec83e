"""The module registry's state: every signed version of every tenant's module, kept in a
directory, and who is told when a version appears or is revoked.

    root/<org>-<config_hash[:16]>/v000001.wasm    the module's bytes
    root/<org>-<config_hash[:16]>/v000001.json    its signed manifest + status (ok | bad, why, who said so, when)

Every file is written atomically (a temporary file in the same directory, fsync, rename,
fsync of the directory), the ``.wasm`` before the ``.json``: a crash between the two
leaves an orphan ``.wasm``, which the next load deletes (it was never published: no one
saw its manifest), so its version number is free again. A ``.json`` is the publication.

Loading checks every entry: its signature by the registry's key or a trusted previous
key (key rotation), its bytes against the manifest, its place (org, config, version)
against its file name. A bad entry stops the load with a ``ConfigError`` naming the file:
the registry never serves from a store it cannot vouch for, and never silently forgets a
version (a forgotten version's number would be reused).

Versions are never reused: a version marked bad still counts. Publishing bytes that are
already published is idempotent (the existing manifest is returned), so a publish retried
after a crash does not mint a second version; publishing bytes that were marked bad is
refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from actors.errors import ConfigError, ModuleRejected
from actors.signing import Manifest, SignedManifest, Signer, TrustStore, check_module

_TENANT_DIR = re.compile(r"(\d+)-([0-9a-f]{16})")
_VERSION_FILE = re.compile(r"v(\d{6,})\.(wasm|json)")
_TMP_PREFIX = ".tmp-"
STATUSES = ("ok", "bad")
_STATUS_KEYS = {"status", "bad_reason", "bad_reporter", "bad_at"}


def atomic_write(path: Path, data: bytes) -> None:
    """Replaces ``path`` with ``data`` all at once: readers see the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory is synced.
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def report_digest(report: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a verification report's JSON, computed exactly as ``Report.digest`` and the
    lineage's commit trailer compute it, so a manifest names the same report as its commit."""
    return hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class VersionEntry:
    """One published version and what has been said about it since."""

    signed: SignedManifest
    """The signed manifest, as published."""
    status: str
    """``ok`` (may be served) or ``bad`` (revoked; never served again, its number never reused)."""
    bad_reason: str | None = None
    """Why it was marked bad, e.g. a shard's shadow check disagreeing; None while ok."""
    bad_reporter: str | None = None
    """Who marked it bad (a shard's name, an operator); None while ok."""
    bad_at: float | None = None
    """Unix seconds when it was marked bad (the registry's clock); None while ok."""

    def to_dict(self) -> dict[str, Any]:
        """The ``.json`` file's content: the signed manifest's fields plus the status fields."""
        return {**self.signed.to_dict(), "status": self.status, "bad_reason": self.bad_reason, "bad_reporter": self.bad_reporter, "bad_at": self.bad_at}

    @classmethod
    def from_dict(cls, d: Any) -> VersionEntry:
        """Strict; raises ``ModuleRejected("bad_manifest")`` or ``ConfigError`` on a malformed record."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a JSON object, found {type(d).__name__}")
        missing = sorted(_STATUS_KEYS - set(d))
        if missing:
            raise ConfigError(f"missing key(s) {', '.join(missing)}")
        signed = SignedManifest.from_dict({k: v for k, v in d.items() if k not in _STATUS_KEYS})
        status, reason, reporter, at = d["status"], d["bad_reason"], d["bad_reporter"], d["bad_at"]
        if status not in STATUSES:
            raise ConfigError(f"status: expected one of {', '.join(STATUSES)}, found {status!r}")
        if status == "ok" and (reason, reporter, at) != (None, None, None):
            raise ConfigError("status ok with bad_reason, bad_reporter or bad_at set")
        if status == "bad" and not (isinstance(reason, str) and isinstance(reporter, str) and isinstance(at, int | float) and not isinstance(at, bool)):
            raise ConfigError("status bad: expected bad_reason and bad_reporter strings and bad_at a number")
        return cls(signed, status, reason, reporter, at)


class RegistryState:
    """Every tenant's published versions, persisted under ``root``; one writer per root."""

    def __init__(self, root: Path, signer: Signer, clock: Callable[[], float], trusted_previous: TrustStore | None = None) -> None:
        """Loads (and checks) everything under ``root``, creating it if needed. Entries may be
        signed by ``signer`` or by a key of ``trusted_previous`` (keys rotated out of signing)."""
        self.root = root
        self._signer = signer
        self._clock = clock
        self._trust = TrustStore([signer.public_raw, *(trusted_previous.public_keys if trusted_previous else ())])
        self._tenants: dict[tuple[int, str], dict[int, VersionEntry]] = {}
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{root}: cannot create the registry directory: {e.strerror or e}") from None
        self._load()

    # -- loading ---------------------------------------------------------------------

    def _load(self) -> None:
        for d in sorted(self.root.iterdir()):
            m = _TENANT_DIR.fullmatch(d.name)
            if m is None or not d.is_dir():
                continue  # not ours: the registry only reads what it wrote
            self._load_tenant(d, int(m.group(1)), m.group(2))

    def _load_tenant(self, d: Path, org: int, prefix: str) -> None:
        files: dict[int, dict[str, Path]] = {}
        for p in d.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                p.unlink()  # a write interrupted before its rename: never visible, so never published
                continue
            m = _VERSION_FILE.fullmatch(p.name)
            if m is not None:
                files.setdefault(int(m.group(1)), {})[m.group(2)] = p
        for version in sorted(files):
            pair = files[version]
            if "json" not in pair:
                pair["wasm"].unlink()  # crashed between the two writes: the version was never published
                continue
            if "wasm" not in pair:
                raise ConfigError(f"{pair['json']}: its module {pair['json'].with_suffix('.wasm').name} is missing")
            entry = self._load_entry(pair["json"], pair["wasm"], org, prefix, version)
            key = (org, entry.signed.manifest.config_hash)
            others = [k for k in self._tenants if k[0] == org and k[1][:16] == prefix and k != key]
            if others:
                raise ConfigError(f"{pair['json']}: config hash {key[1]} shares the directory with {others[0][1]}")
            self._tenants.setdefault(key, {})[version] = entry

    def _load_entry(self, json_path: Path, wasm_path: Path, org: int, prefix: str, version: int) -> VersionEntry:
        try:
            entry = VersionEntry.from_dict(json.loads(json_path.read_bytes()))
            check_module(entry.signed, wasm_path.read_bytes(), self._trust)
        except (ValueError, ConfigError, ModuleRejected, OSError) as e:
            raise ConfigError(f"{json_path}: corrupt registry entry: {e}") from None
        m = entry.signed.manifest
        if (m.org, m.config_hash[:16], m.version) != (org, prefix, version):
            raise ConfigError(f"{json_path}: the manifest names org {m.org}, config {m.config_hash[:16]}, version {m.version}, not its place in the registry")
        return entry

    # -- writing ---------------------------------------------------------------------

    def _dir(self, org: int, config_hash: str) -> Path:
        return self.root / f"{org}-{config_hash[:16]}"

    def _write_entry(self, entry: VersionEntry) -> None:
        m = entry.signed.manifest
        path = self._dir(m.org, m.config_hash) / f"v{m.version:06d}.json"
        atomic_write(path, json.dumps(entry.to_dict(), sort_keys=True, indent=1, allow_nan=False).encode() + b"\n")

    def publish(
        self,
        org: int,
        config_hash: str,
        wasm: bytes,
        *,
        origin: str,
        source_commit: str | None = None,
        parent: str | None = None,
        report: Mapping[str, Any] | None = None,
        ratio: float | None = None,
    ) -> SignedManifest:
        """Signs and stores ``wasm`` as the next version of (org, config_hash). A ``report``,
        when given, must be an accepted verification report (else ``not_verified``)."""
        digest = None
        if report is not None:
            if not isinstance(report, Mapping) or report.get("accepted") is not True:
                raise ModuleRejected("not_verified", f"org {org}: the verification report does not say accepted")
            digest = report_digest(report)
        sha = hashlib.sha256(wasm).hexdigest()
        entries = self._tenants.get((org, config_hash), {})
        for e in entries.values():
            if e.signed.manifest.module_sha256 == sha:
                if e.status == "bad":
                    raise ModuleRejected("revoked", f"org {org}: these bytes are version {e.signed.manifest.version}, marked bad: {e.bad_reason}")
                return e.signed  # a retried publish: the same module keeps its version
        version = max(entries, default=0) + 1
        manifest = Manifest(org, config_hash, version, sha, len(wasm), origin, source_commit, parent, digest, ratio, self._clock())
        # Signing validates every field, so nothing (a path-like config hash) reaches the disk unchecked.
        signed = self._signer.sign(manifest)
        prefix = config_hash[:16]
        clash = [k for k in self._tenants if k[0] == org and k[1][:16] == prefix and k[1] != config_hash]
        if clash:
            raise ConfigError(f"org {org}: config hash {config_hash} shares its 16-digit prefix with {clash[0][1]}")
        d = self._dir(org, config_hash)
        d.mkdir(exist_ok=True)
        atomic_write(d / f"v{version:06d}.wasm", wasm)
        entry = VersionEntry(signed, "ok")
        self._write_entry(entry)
        self._tenants.setdefault((org, config_hash), {})[version] = entry
        return signed

    def mark_bad(self, org: int, config_hash: str, version: int, reason: str, reporter: str) -> bool:
        """Revokes a version (persisted). False if it was bad already (the first report stands)."""
        entry = self.entry(org, config_hash, version)
        if entry.status == "bad":
            return False
        bad = replace(entry, status="bad", bad_reason=reason, bad_reporter=reporter, bad_at=self._clock())
        self._write_entry(bad)
        self._tenants[(org, config_hash)][version] = bad
        return True

    # -- reading ---------------------------------------------------------------------

    def entry(self, org: int, config_hash: str, version: int) -> VersionEntry:
        try:
            return self._tenants[(org, config_hash)][version]
        except KeyError:
            raise ConfigError(f"org {org}, config {config_hash[:16]}: no version {version}") from None

    def get(self, org: int, config_hash: str, version: int) -> tuple[SignedManifest, bytes]:
        """The signed manifest and the bytes, checked again (the disk may have changed since loading)."""
        entry = self.entry(org, config_hash, version)
        path = self._dir(org, config_hash) / f"v{version:06d}.wasm"
        try:
            wasm = path.read_bytes()
            check_module(entry.signed, wasm, self._trust)
        except (OSError, ModuleRejected) as e:
            raise ConfigError(f"{path}: {e}") from None
        return entry.signed, wasm

    def latest(self, org: int, config_hash: str) -> SignedManifest | None:
        """The highest version that is not marked bad."""
        ok = [e for v, e in sorted(self._tenants.get((org, config_hash), {}).items()) if e.status == "ok"]
        return ok[-1].signed if ok else None

    def versions(self, org: int, config_hash: str) -> list[VersionEntry]:
        """Every version, bad ones included, oldest first."""
        return [e for _, e in sorted(self._tenants.get((org, config_hash), {}).items())]

    def tenants(self) -> list[tuple[int, str]]:
        return sorted(self._tenants)

    def is_bad(self, org: int, config_hash: str, version: int) -> bool:
        return self.entry(org, config_hash, version).status == "bad"


class ShardPeer(Protocol):
    """A subscriber as the registry sees it. Calls must not block (fire and forget)."""

    def offer(self, signed: dict[str, Any], module_ref: list[Any]) -> None:
        """A new version: its signed manifest dict and ``[ref]`` to the bytes (in a list, so the ref is not resolved on the way)."""

    def revoke(self, org: int, config_hash: str, version: int, reason: str) -> None:
        """A version was marked bad."""

    def alive(self) -> bool:
        """False once the subscriber is known to be gone for good."""


class Subscriptions:
    """Who hears about which org's versions. Pure: the peers hide the transport."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._peers: dict[str, ShardPeer] = {}
        self._orgs: dict[str, frozenset[int]] = {}
        self._log = log

    def subscribe(self, name: str, peer: ShardPeer, orgs: Iterable[int]) -> None:
        """Idempotent; subscribing again under a name replaces its peer and orgs."""
        self._peers[name] = peer
        self._orgs[name] = frozenset(orgs)

    def unsubscribe(self, name: str) -> bool:
        self._orgs.pop(name, None)
        return self._peers.pop(name, None) is not None

    def names(self) -> list[str]:
        return sorted(self._peers)

    def recipients(self, org: int) -> list[str]:
        """The subscribers of ``org``, in name order."""
        return [n for n in sorted(self._peers) if org in self._orgs[n]]

    def _prune(self) -> None:
        for name in list(self._peers):
            try:
                alive = self._peers[name].alive()
            except Exception as e:
                self._log(f"subscriber {name}: liveness check failed ({e}); dropping it")
                alive = False
            if not alive:
                self._log(f"subscriber {name} is gone; dropping it")
                self.unsubscribe(name)

    def offer(self, signed: SignedManifest, module_ref: list[Any]) -> list[str]:
        """Pushes a new version to its org's subscribers; returns who was sent it. A failing
        peer is logged and skipped: a subscriber never breaks a publish."""
        self._prune()
        sent = []
        d = signed.to_dict()
        for name in self.recipients(signed.manifest.org):
            try:
                self._peers[name].offer(d, module_ref)
                sent.append(name)
            except Exception as e:
                self._log(f"subscriber {name}: offer of org {signed.manifest.org} version {signed.manifest.version} failed: {e}")
        return sent

    def revoke(self, org: int, config_hash: str, version: int, reason: str) -> list[str]:
        """Tells the org's subscribers a version is bad; returns who was told."""
        self._prune()
        sent = []
        for name in self.recipients(org):
            try:
                self._peers[name].revoke(org, config_hash, version, reason)
                sent.append(name)
            except Exception as e:
                self._log(f"subscriber {name}: revoke of org {org} version {version} failed: {e}")
        return sent

"""Signed module manifests: what the registry vouches for about a wasm module, and how a
shard checks it before loading the module.

A :class:`Manifest` names the tenant (org and config hash), the version, the module's
SHA-256 and size, and where the module came from. The registry signs its canonical JSON
with Ed25519 (:class:`Signer`); a shard accepts a module only when the signature is by a
key in its :class:`TrustStore` and the bytes match the manifest (:func:`check_module`).
A trust store holds several keys so that a key can be rotated: versions signed by the
previous key stay valid while the new key signs what comes next.

What is signed is ``SIGNING_CONTEXT + canonical_bytes()``: the prefix keeps a signature
over a manifest from ever being valid for any other message signed with the same key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from actors.errors import ConfigError, ModuleRejected

SIGNING_CONTEXT = b"evoagg module manifest v1\x00"
"""Prepended to the canonical JSON before signing (domain separation)."""
MAX_TEXT = 1024
"""Longest free-text field (origin, source_commit, parent), in characters."""
MAX_INT = 2**63 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SIGNATURE = re.compile(r"[0-9a-f]{128}")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _bad(detail: str) -> ModuleRejected:
    return ModuleRejected("bad_manifest", detail)


def _int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name}: expected an integer, found {value!r}")
    if not lo <= value <= MAX_INT:
        raise _bad(f"{name}: expected {lo}..2^63-1, found {value}")


def _hex64(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(f"{name}: expected 64 lowercase hex digits, found {value!r}")


def _text(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise _bad(f"{name}: expected a non-empty string of at most {MAX_TEXT} characters{' or null' if optional else ''}, found {value!r}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{name}: expected a number, found {value!r}")
    if not math.isfinite(value):
        raise _bad(f"{name}: expected a finite number, found {value!r}")
    return float(value)


def _strict_keys(where: str, d: Any, names: set[str]) -> None:
    if not isinstance(d, Mapping):
        raise _bad(f"{where}: expected a mapping, found {type(d).__name__}")
    unknown, missing = sorted(set(d) - names, key=str), sorted(names - set(d))
    if unknown:
        raise _bad(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    if missing:
        raise _bad(f"{where}: missing key(s) {', '.join(missing)}")


@dataclass(frozen=True)
class Manifest:
    """What the registry says about one version of one tenant's module."""

    org: int
    """The tenant's org id."""
    config_hash: str
    """SHA-256 (hex) of the tenant's encoded config (``actors.kernel.abi.config_hash``): the module serves exactly this config."""
    version: int
    """Version of the module for (org, config_hash), from 1; never reused."""
    module_sha256: str
    """SHA-256 (hex) of the wasm bytes."""
    module_bytes: int
    """Size of the wasm module in bytes."""
    origin: str
    """Where the module came from, free text: ``generic``, ``specialized``, ``evolved gen 7``."""
    source_commit: str | None
    """The lineage commit of the module's source, when there is one."""
    parent: str | None
    """The candidate or commit it was derived from, free text."""
    report_digest: str | None
    """SHA-256 (hex) of the verification report's canonical JSON; None when published unverified (e.g. the generic kernel)."""
    ratio: float | None
    """Measured speed ratio (to the generic kernel) when known; finite and positive."""
    created_at: float
    """Unix seconds when the registry signed it (from the registry's injected clock)."""

    def validate(self) -> Manifest:
        """Checks every field's type and range; raises ``ModuleRejected("bad_manifest")``."""
        _int("org", self.org, 0)
        _hex64("config_hash", self.config_hash)
        _int("version", self.version, 1)
        _hex64("module_sha256", self.module_sha256)
        _int("module_bytes", self.module_bytes, 1)
        _text("origin", self.origin, optional=False)
        _text("source_commit", self.source_commit, optional=True)
        _text("parent", self.parent, optional=True)
        if self.report_digest is not None:
            _hex64("report_digest", self.report_digest)
        if self.ratio is not None and _number("ratio", self.ratio) <= 0:
            raise _bad(f"ratio: expected a positive number, found {self.ratio!r}")
        if _number("created_at", self.created_at) < 0:
            raise _bad(f"created_at: expected unix seconds >= 0, found {self.created_at!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def canonical_bytes(self) -> bytes:
        """The bytes that are signed (after ``SIGNING_CONTEXT``): sorted keys, no spaces, no NaN."""
        self.validate()
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Strict: every field present, nothing else, every type right."""
        _strict_keys("manifest", d, {f.name for f in fields(cls)})
        return cls(**d).validate()


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with the registry's signature over it."""

    manifest: Manifest
    """What is vouched for."""
    key_id: str
    """Which key signed it (:func:`key_id` of the public key): 16 hex digits."""
    signature: str
    """The Ed25519 signature (64 bytes, hex) over ``SIGNING_CONTEXT + manifest.canonical_bytes()``."""

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest.to_dict(), "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_dict(cls, d: Any) -> SignedManifest:
        """Strict, like :meth:`Manifest.from_dict`; the signature is checked by a :class:`TrustStore`, not here."""
        _strict_keys("signed manifest", d, {"manifest", "key_id", "signature"})
        if not isinstance(d["key_id"], str) or not _KEY_ID.fullmatch(d["key_id"]):
            raise _bad(f"key_id: expected 16 lowercase hex digits, found {d['key_id']!r}")
        if not isinstance(d["signature"], str) or not _SIGNATURE.fullmatch(d["signature"]):
            raise _bad(f"signature: expected 128 lowercase hex digits, found {d['signature']!r}")
        return cls(Manifest.from_dict(d["manifest"]), d["key_id"], d["signature"])


def key_id(public_raw: bytes) -> str:
    """The short id of a public key: the first 16 hex digits of SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Signer:
    """An Ed25519 private key that signs manifests."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self._public_raw = _raw_public(private.public_key())

    @classmethod
    def generate(cls) -> Signer:
        """A fresh key held only in memory (tests)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> Signer:
        """Reads a PEM PKCS8 Ed25519 private key; refuses one that group or others may read."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ConfigError(f"{path}: cannot open the signing key: {e.strerror or e}") from None
        # The mode is checked on the open descriptor, so it is the file actually read.
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{path}: the signing key is not a regular file")
            if st.st_mode & 0o077:
                mode = stat.S_IMODE(st.st_mode)
                raise ConfigError(f"{path}: the signing key is open to group or others (mode {mode:04o}); run: chmod 600 {path}")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the signing key: {e.strerror or e}") from None
        finally:
            os.close(fd)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise ConfigError(f"{path}: not an unencrypted PEM PKCS8 private key ({e})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: expected an Ed25519 private key, found {type(key).__name__}")
        return cls(key)

    @property
    def public_raw(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return self._public_raw

    @property
    def public_hex(self) -> str:
        return self._public_raw.hex()

    @property
    def key_id(self) -> str:
        return key_id(self._public_raw)

    def sign(self, manifest: Manifest) -> SignedManifest:
        """Validates ``manifest`` and signs it."""
        sig = self._private.sign(SIGNING_CONTEXT + manifest.canonical_bytes())
        return SignedManifest(manifest, self.key_id, sig.hex())


def keygen(directory: Path, name: str = "evoagg") -> tuple[Path, Path]:
    """Writes ``<name>.key`` (PEM PKCS8, mode 0600) and ``<name>.pub`` (the raw public key
    in hex, one line) to ``directory``; never overwrites a key. Returns both paths."""
    if not _KEY_NAME.fullmatch(name):
        raise ConfigError(f"key name {name!r}: expected letters, digits, '_', '.', '-'")
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p} exists; refusing to overwrite a key (move it away first)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{directory}: cannot create the key directory: {e.strerror or e}") from None
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Created 0600 by open itself (O_EXCL), so the key is never readable by others, not even briefly.
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{key_path} exists; refusing to overwrite a key (move it away first)") from None
    except OSError as e:
        raise ConfigError(f"{key_path}: cannot create the key file: {e.strerror or e}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    pub_path.write_text(_raw_public(private.public_key()).hex() + "\n")
    return key_path, pub_path


class TrustStore:
    """The public keys a shard (or the registry, loading its own files) accepts signatures from."""

    def __init__(self, public_keys: Iterable[bytes]) -> None:
        """``public_keys``: raw 32-byte Ed25519 public keys."""
        self._keys: dict[str, Ed25519PublicKey] = {}
        for raw in public_keys:
            try:
                key = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError as e:
                raise ConfigError(f"trusted key: not a 32-byte Ed25519 public key ({e})") from None
            kid = key_id(raw)
            if kid in self._keys and _raw_public(self._keys[kid]) != raw:
                raise ConfigError(f"trusted keys: two different keys share the id {kid}")
            self._keys[kid] = key

    @classmethod
    def from_entries(cls, entries: Iterable[str | Path], base: Path | None = None) -> TrustStore:
        """Each entry is a public key in hex (64 digits) or the path of a ``.pub`` file holding
        one; relative paths are taken from ``base`` when given."""
        raws = []
        for entry in entries:
            if isinstance(entry, str) and re.fullmatch(r"[0-9a-fA-F]{64}", entry):
                raws.append(bytes.fromhex(entry))
                continue
            path = Path(entry)
            if base is not None and not path.is_absolute():
                path = base / path
            try:
                text = path.read_text().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"trusted key {entry!s}: not 64 hex digits, and cannot read it as a file: {e}") from None
            if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
                raise ConfigError(f"{path}: expected one line of 64 hex digits (a raw Ed25519 public key)")
            raws.append(bytes.fromhex(text))
        return cls(raws)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def public_keys(self) -> tuple[bytes, ...]:
        """The raw keys, in id order (to build a larger store from this one)."""
        return tuple(_raw_public(self._keys[k]) for k in sorted(self._keys))

    def verify(self, signed: SignedManifest) -> None:
        """Raises ``ModuleRejected``: ``untrusted_key``, ``bad_manifest`` or ``bad_signature``."""
        key = self._keys.get(signed.key_id)
        if key is None:
            raise ModuleRejected("untrusted_key", f"key {signed.key_id!r} is not trusted (trusted: {', '.join(sorted(self._keys)) or 'none'})")
        message = SIGNING_CONTEXT + signed.manifest.canonical_bytes()
        try:
            key.verify(bytes.fromhex(signed.signature), message)
        except (InvalidSignature, ValueError, TypeError):
            m = signed.manifest
            raise ModuleRejected("bad_signature", f"org {m.org} version {m.version}: the signature by key {signed.key_id} does not match") from None


def check_module(signed: SignedManifest, wasm: bytes, trust: TrustStore) -> None:
    """The check before loading a module: the signature, then the bytes against the manifest."""
    trust.verify(signed)
    m = signed.manifest
    if len(wasm) != m.module_bytes or hashlib.sha256(wasm).hexdigest() != m.module_sha256:
        raise ModuleRejected("sha256_mismatch", f"org {m.org} version {m.version}: the module's {len(wasm)} bytes do not match the manifest's SHA-256 and size")

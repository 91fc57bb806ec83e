"""Signed manifests with real Ed25519 keys: what verifies, what is refused and why, key files."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from hypothesis import assume, given
from hypothesis import strategies as st

from actors.config import TenantConfig
from actors.errors import ConfigError, ModuleRejected
from actors.kernel.abi import config_hash, encode_config
from actors.query import parse_query
from actors.signing import Manifest, SignedManifest, Signer, TrustStore, check_module, key_id, keygen

WASM = b"\0asm\x01\0\0\0" + bytes(range(64))
SIGNER = Signer.generate()
OTHER = Signer.generate()


def manifest(wasm: bytes = WASM, **over: Any) -> Manifest:
    values: dict[str, Any] = {
        "org": 1042,
        "config_hash": "ab" * 32,
        "version": 3,
        "module_sha256": hashlib.sha256(wasm).hexdigest(),
        "module_bytes": len(wasm),
        "origin": "evolved gen 7",
        "source_commit": "0123abcd",
        "parent": "1042-i0-g6-c1",
        "report_digest": "cd" * 32,
        "ratio": 1.75,
        "created_at": 1_700_000_000.5,
    }
    values.update(over)
    return Manifest(**values)


def trust(*signers: Signer) -> TrustStore:
    return TrustStore.from_entries([s.public_hex for s in signers])


def reason(e: pytest.ExceptionInfo[ModuleRejected]) -> str:
    return e.value.reason


def test_sign_verify_roundtrip_through_dicts() -> None:
    signed = SIGNER.sign(manifest())
    again = SignedManifest.from_dict(signed.to_dict())
    assert again == signed and again.key_id == SIGNER.key_id == key_id(bytes.fromhex(SIGNER.public_hex))
    check_module(again, WASM, trust(SIGNER))


def test_canonical_bytes_are_sorted_compact_json() -> None:
    b = manifest(ratio=None, parent=None).canonical_bytes()
    assert b.startswith(b'{"config_hash":"abab') and b" " not in b.replace(b"evolved gen 7", b"")
    assert b'"parent":null' in b and b'"ratio":null' in b


def test_a_tampered_field_is_a_bad_signature() -> None:
    signed = SIGNER.sign(manifest())
    forged = replace(signed, manifest=replace(signed.manifest, ratio=9.0))
    with pytest.raises(ModuleRejected) as e:
        trust(SIGNER).verify(forged)
    assert reason(e) == "bad_signature"


def test_tampered_bytes_are_a_sha256_mismatch() -> None:
    signed = SIGNER.sign(manifest())
    for wasm in (WASM[:-1] + b"\xff", WASM + b"\0", WASM[:-1]):
        with pytest.raises(ModuleRejected) as e:
            check_module(signed, wasm, trust(SIGNER))
        assert reason(e) == "sha256_mismatch"


def test_the_signature_is_checked_before_the_bytes() -> None:
    signed = SIGNER.sign(manifest())
    with pytest.raises(ModuleRejected) as e:
        check_module(signed, b"other", trust(OTHER))
    assert reason(e) == "untrusted_key"


def test_an_unknown_key_is_untrusted() -> None:
    with pytest.raises(ModuleRejected) as e:
        trust(OTHER).verify(SIGNER.sign(manifest()))
    assert reason(e) == "untrusted_key" and SIGNER.key_id in str(e.value)
    with pytest.raises(ModuleRejected) as e:
        TrustStore([]).verify(SIGNER.sign(manifest()))
    assert reason(e) == "untrusted_key"


def test_a_signature_by_another_key_under_a_trusted_id_is_bad() -> None:
    forged = replace(OTHER.sign(manifest()), key_id=SIGNER.key_id)
    with pytest.raises(ModuleRejected) as e:
        trust(SIGNER).verify(forged)
    assert reason(e) == "bad_signature"


def test_rotation_two_trusted_keys_both_verify(tmp_path: Path) -> None:
    old_key, old_pub = keygen(tmp_path, "old")
    old = Signer.load(old_key)
    store = TrustStore.from_entries(["old.pub", SIGNER.public_hex], base=tmp_path)
    assert store.key_ids == {old.key_id, SIGNER.key_id}
    store.verify(old.sign(manifest(version=1)))
    store.verify(SIGNER.sign(manifest(version=2)))
    TrustStore.from_entries([old_pub]).verify(old.sign(manifest()))


def test_trust_entries_that_are_neither_keys_nor_key_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pub").write_text("not a key\n")
    for entry in ("junk.pub", "missing.pub", "ab" * 31):
        with pytest.raises(ConfigError):
            TrustStore.from_entries([entry], base=tmp_path)


def test_keygen_writes_a_private_key_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key, pub = keygen(tmp_path / "keys")
    assert (key.name, pub.name) == ("evoagg.key", "evoagg.pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    signer = Signer.load(key)
    assert pub.read_text() == signer.public_hex + "\n" and len(signer.public_hex) == 64
    before = key.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        keygen(tmp_path / "keys")
    assert key.read_bytes() == before
    with pytest.raises(ConfigError):
        keygen(tmp_path, "../escape")


def test_load_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    key, _ = keygen(tmp_path)
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Signer.load(key)
    os.chmod(key, 0o600)
    assert Signer.load(key).public_hex == (tmp_path / "evoagg.pub").read_text().strip()


def test_load_refuses_missing_garbage_and_non_ed25519_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        Signer.load(tmp_path / "none.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    garbage.chmod(0o600)
    with pytest.raises(ConfigError, match="PEM"):
        Signer.load(garbage)
    ec = tmp_path / "ec.key"
    ec.write_bytes(generate_private_key(SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ec.chmod(0o600)
    with pytest.raises(ConfigError, match="Ed25519"):
        Signer.load(ec)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("ratio"),
        lambda d: d.update(extra=1),
        lambda d: d.update(org="1042"),
        lambda d: d.update(org=True),
        lambda d: d.update(version=0),
        lambda d: d.update(config_hash="AB" * 32),
        lambda d: d.update(config_hash="../../etc"),
        lambda d: d.update(module_sha256="00"),
        lambda d: d.update(module_bytes=0),
        lambda d: d.update(origin=""),
        lambda d: d.update(source_commit=7),
        lambda d: d.update(report_digest="x" * 64),
        lambda d: d.update(ratio=float("nan")),
        lambda d: d.update(ratio=float("inf")),
        lambda d: d.update(ratio=-1.0),
        lambda d: d.update(ratio="1.5"),
        lambda d: d.update(created_at=None),
    ],
)
def test_manifest_from_dict_is_strict(change: Any) -> None:
    d = manifest().to_dict()
    change(d)
    with pytest.raises(ModuleRejected) as e:
        Manifest.from_dict(d)
    assert reason(e) == "bad_manifest"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("key_id"),
        lambda d: d.update(more=1),
        lambda d: d.update(key_id="xyz"),
        lambda d: d.update(signature="00" * 63),
        lambda d: d.update(signature=None),
        lambda d: d.update(manifest=[]),
        lambda d: d["manifest"].pop("org"),
    ],
)
def test_signed_manifest_from_dict_is_strict(change: Any) -> None:
    d = SIGNER.sign(manifest()).to_dict()
    change(d)
    with pytest.raises(ModuleRejected) as e:
        SignedManifest.from_dict(d)
    assert reason(e) == "bad_manifest"
    with pytest.raises(ModuleRejected):
        SignedManifest.from_dict([])


def test_signing_refuses_an_invalid_manifest() -> None:
    with pytest.raises(ModuleRejected) as e:
        SIGNER.sign(manifest(ratio=float("nan")))
    assert reason(e) == "bad_manifest"


def test_config_hash_is_sha256_of_the_encoded_config() -> None:
    cfg = TenantConfig(1042, 60, (parse_query("sum:cpu.usage{*} by {host}", "q0"),))
    assert config_hash(cfg) == hashlib.sha256(encode_config(cfg)).hexdigest()
    assert config_hash(replace(cfg, interval_s=30)) != config_hash(cfg)


@given(st.integers(0, 63), st.integers(1, 255))
def test_any_flipped_signature_byte_fails(index: int, xor: int) -> None:
    signed = SIGNER.sign(manifest())
    sig = bytearray(bytes.fromhex(signed.signature))
    sig[index] ^= xor
    with pytest.raises(ModuleRejected) as e:
        trust(SIGNER).verify(replace(signed, signature=sig.hex()))
    assert reason(e) == "bad_signature"


HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
TEXT = st.text(min_size=1, max_size=40)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "org": st.integers(0, 2**63 - 1),
    "config_hash": HEX64,
    "version": st.integers(1, 2**63 - 1),
    "module_sha256": HEX64,
    "module_bytes": st.integers(1, 2**63 - 1),
    "origin": TEXT,
    "source_commit": st.none() | TEXT,
    "parent": st.none() | TEXT,
    "report_digest": st.none() | HEX64,
    "ratio": st.none() | st.floats(min_value=1e-9, max_value=1e9),
    "created_at": st.floats(min_value=0, max_value=4e9) | st.integers(0, 2**40),
}


def test_the_property_covers_every_field() -> None:
    assert set(FIELD_VALUES) == {f.name for f in fields(Manifest)}


@given(st.sampled_from(sorted(FIELD_VALUES)).flatmap(lambda name: st.tuples(st.just(name), FIELD_VALUES[name])))
def test_any_changed_manifest_field_fails(change: tuple[str, Any]) -> None:
    name, value = change
    signed = SIGNER.sign(manifest())
    original = getattr(signed.manifest, name)
    assume(value != original or type(value) is not type(original))
    forged = replace(signed, manifest=replace(signed.manifest, **{name: value}))
    assume(forged.manifest.canonical_bytes() != signed.manifest.canonical_bytes())
    with pytest.raises(ModuleRejected) as e:
        trust(SIGNER).verify(forged)
    assert reason(e) == "bad_signature"


def test_cli_keygen_prints_the_key_id_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from actors.cli import main

    assert main(["keygen", "--out", str(tmp_path), "--name", "reg"]) == 0
    out = capsys.readouterr().out
    assert Signer.load(tmp_path / "reg.key").key_id in out and str(tmp_path / "reg.pub") in out
    assert main(["keygen", "--out", str(tmp_path), "--name", "reg"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err

"""Signed modules for tests: real Ed25519 signatures over real manifests."""

from __future__ import annotations

import hashlib

from actors.config import TenantConfig
from actors.kernel.abi import config_hash
from actors.signing import Manifest, SignedManifest, Signer


def sign_module(signer: Signer, config: TenantConfig, wasm: bytes, version: int, origin: str = "test", created_at: float = 0.0) -> SignedManifest:
    m = Manifest(
        org=config.org,
        config_hash=config_hash(config),
        version=version,
        module_sha256=hashlib.sha256(wasm).hexdigest(),
        module_bytes=len(wasm),
        origin=origin,
        source_commit=None,
        parent=None,
        report_digest=None,
        ratio=None,
        created_at=created_at,
    )
    return signer.sign(m)

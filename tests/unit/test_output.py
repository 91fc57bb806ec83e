from __future__ import annotations

import struct

from actors.output import Row, canonical, output_hash


def test_hash_is_order_free_and_has_a_fixed_encoding() -> None:
    rows = [Row("b", -30, "", 1.5), Row("a", 0, "host:h1,region:N/A", 2.0)]
    assert canonical(rows)[0].query == "a"
    assert output_hash(rows) == output_hash(list(reversed(rows)))
    # The documented encoding, written out by hand (actors/output.py's docstring).
    import hashlib

    h = hashlib.sha256()
    for q, b, g, v in [("a", 0, "host:h1,region:N/A", 2.0), ("b", -30, "", 1.5)]:
        h.update(struct.pack("<I", len(q)) + q.encode() + struct.pack("<qI", b, len(g)) + g.encode() + struct.pack("<d", v))
    assert output_hash(rows) == h.hexdigest()


def test_hash_sees_every_field_and_every_bit() -> None:
    base = [Row("q", 0, "g", 0.0)]
    variants = [
        [Row("r", 0, "g", 0.0)],
        [Row("q", 30, "g", 0.0)],
        [Row("q", 0, "h", 0.0)],
        [Row("q", 0, "g", -0.0)],  # bit-exact: -0.0 is not 0.0
        [Row("q", 0, "g", 5e-324)],
        [*base, Row("q", 0, "g2", 0.0)],
        [],
    ]
    hashes = {output_hash(v) for v in variants}
    assert output_hash(base) not in hashes and len(hashes) == len(variants)

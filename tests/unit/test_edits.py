"""SEARCH/REPLACE edits (actors/evolve/proposers/edits.py): they apply to the evolvable file
only, and every way an edit can be wrong is refused with a message a model can act on."""

from __future__ import annotations

import pytest

from actors.errors import EditRejected, ProposalFailed
from actors.evolve.proposers.edits import (
    MAX_EVOLVABLE_BYTES,
    EditBlock,
    apply_blocks,
    apply_response,
    parse_blocks,
    render_blocks,
    strip_comments,
)
from actors.specialize import EVOLVABLE, template_kernel

SRC = """//! A kernel.
use crate::spec;

const NONE: u32 = u32::MAX;

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn sub(a: u64, b: u64) -> u64 {
    a - b
}
"""


def block(search: str, replace: str, path: str | None = None) -> str:
    head = f"{path}\n" if path else ""
    return f"{head}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def test_block_with_path_and_fence_applies() -> None:
    text = "Use a wrapping add.\n\nsrc/kernel.rs\n```rust\n" + block("    a + b\n", "    a.wrapping_add(b)\n") + "```\n"
    edit = apply_response(text, SRC, EVOLVABLE)
    assert edit.kind == "blocks"
    assert "a.wrapping_add(b)" in edit.source and "    a + b\n" not in edit.source
    assert edit.source.replace("a.wrapping_add(b)", "a + b") == SRC
    assert "<<<<<<< SEARCH" in edit.patch and "src/kernel.rs" in edit.patch


@pytest.mark.parametrize("path", [None, "src/kernel.rs", "./src/kernel.rs", "`src/kernel.rs`", "kernel.rs", "out/spec-1042/src/kernel.rs", "src/kernel.rs:"])
def test_accepted_path_spellings(path: str | None) -> None:
    edit = apply_response(block("const NONE: u32 = u32::MAX;\n", "const NONE: u32 = !0;\n", path), SRC, EVOLVABLE)
    assert "const NONE: u32 = !0;" in edit.source


@pytest.mark.parametrize("path", ["src/spec.rs", "src/lib.rs", "Cargo.toml", "../other/src/kernel.rs", "deps/tables/src/groups.rs"])
def test_block_naming_another_file_is_rejected(path: str) -> None:
    with pytest.raises(EditRejected, match=r"only src/kernel.rs may change"):
        apply_response(block("const NONE: u32 = u32::MAX;\n", "const NONE: u32 = !0;\n", path), SRC, EVOLVABLE)


def test_blocks_apply_in_order() -> None:
    text = block("    a + b\n", "    a + b + 1\n") + "\n" + block("    a + b + 1\n", "    (a + b) | 1\n")
    assert "    (a + b) | 1\n" in apply_response(text, SRC, EVOLVABLE).source


def test_search_not_found_names_the_line() -> None:
    with pytest.raises(EditRejected, match=r"not in src/kernel.rs.*'a \* b'") as e:
        apply_response(block("fn add(a: u64, b: u64) -> u64 {\n    a * b\n", "x\n"), SRC, EVOLVABLE)
    assert isinstance(e.value, ProposalFailed)


def test_search_with_wrong_indentation_says_so() -> None:
    with pytest.raises(EditRejected, match=r"with that indentation"):
        apply_response(block("  a + b\n", "  a - b\n"), SRC, EVOLVABLE)


def test_search_changed_by_an_earlier_block_says_so() -> None:
    text = block("    a + b\n}\n", "    b + a\n}\n") + block("    a + b\n", "    a ^ b\n")
    with pytest.raises(EditRejected, match=r"block 2.*earlier block"):
        apply_response(text, SRC, EVOLVABLE)


def test_ambiguous_search_is_rejected_with_the_lines() -> None:
    with pytest.raises(EditRejected, match=r"occurs 2 times \(at lines 8, 12\)"):
        apply_response(block("}\n", "}\n// x\n"), SRC, EVOLVABLE)


def test_search_matches_whole_lines_only() -> None:
    with pytest.raises(EditRejected, match=r"not in src/kernel.rs"):
        apply_response(block("u64::MAX;\n", "u64::MIN;\n"), SRC.replace("u32::MAX", "u64::MAX"), EVOLVABLE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I would make it faster.", r"holds no edit"),
        ("", r"holds no edit"),
        (block("", "fn f() {}\n"), r"SEARCH is empty"),
        (block("   \n", "fn f() {}\n"), r"SEARCH is empty"),
        (block("    a + b\n", "    a + b\n"), r"changes nothing"),
    ],
)
def test_empty_edits_are_rejected(text: str, expected: str) -> None:
    with pytest.raises(EditRejected, match=expected):
        apply_response(text, SRC, EVOLVABLE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<<<<<<< SEARCH\n    a + b\n", r"block 1.*'=======' missing"),
        ("<<<<<<< SEARCH\n    a + b\n=======\n    a - b\n", r"'>>>>>>> REPLACE' missing \(was the answer cut short\?\)"),
        ("<<<<<<< SEARCH\n    a + b\n<<<<<<< SEARCH\n", r"'=======' missing"),
        ("<<<<<<< SEARCH\n    a + b\n=======\n    a - b\n=======\n>>>>>>> REPLACE\n", r"'>>>>>>> REPLACE' missing before line 5"),
        ("text\n>>>>>>> REPLACE\n", r"line 2: '>>>>>>> REPLACE' without"),
    ],
)
def test_malformed_markers_are_rejected(text: str, expected: str) -> None:
    with pytest.raises(EditRejected, match=expected):
        apply_response(text, SRC, EVOLVABLE)


def test_result_over_the_cap_is_rejected() -> None:
    filler = "// " + "x" * 100 + "\n"
    text = block("const NONE: u32 = u32::MAX;\n", "const NONE: u32 = u32::MAX;\n" + filler * (MAX_EVOLVABLE_BYTES // len(filler) + 1))
    with pytest.raises(EditRejected, match=rf"within {MAX_EVOLVABLE_BYTES} bytes"):
        apply_response(text, SRC, EVOLVABLE)


def test_exactly_the_cap_is_accepted() -> None:
    pad = MAX_EVOLVABLE_BYTES - len(SRC.encode()) - len("// \n")
    edit = apply_response(block("const NONE: u32 = u32::MAX;\n", "const NONE: u32 = u32::MAX;\n// " + "y" * pad + "\n"), SRC, EVOLVABLE)
    assert len(edit.source.encode()) == MAX_EVOLVABLE_BYTES


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('const T: &str = include_str!("spec.rs");\n', r"include_str!"),
        ('#[path = "../x.rs"]\nmod x;\n', r"#\[path"),
        ("mod helpers;\n", r"out-of-line"),
        ("pub(crate) mod helpers;\n", r"out-of-line"),
        ('extern "C" {\n    fn host_time() -> u64;\n}\n', r"import nothing"),
        ('#[no_mangle]\npub extern "C" fn extra() {}\n', r"exports"),
        ('const P: &str = env!("HOME");\n', r"environment"),
    ],
)
def test_constructs_reaching_outside_the_file_are_rejected(code: str, expected: str) -> None:
    with pytest.raises(EditRejected, match=expected):
        apply_response(block("const NONE: u32 = u32::MAX;\n", "const NONE: u32 = u32::MAX;\n" + code), SRC, EVOLVABLE)


def test_allowed_lookalikes() -> None:
    code = '// include_str! would read a file; mod x; too\n/* extern "C" { } */\nmod inline {\n    pub const K: u32 = 1;\n}\n'
    edit = apply_response(block("const NONE: u32 = u32::MAX;\n", "const NONE: u32 = u32::MAX;\n" + code), SRC, EVOLVABLE)
    assert "mod inline" in edit.source
    assert strip_comments("a // b\nc /* d\ne */ f\n") == "a \nc     \n     f\n"


def test_full_rewrite_only_when_allowed() -> None:
    new = SRC.replace("a - b", "a.wrapping_sub(b)")
    text = f"The whole file:\n```rust\n{new}```\n"
    with pytest.raises(EditRejected, match=r"full rewrite is not accepted"):
        apply_response(text, SRC, EVOLVABLE)
    edit = apply_response(text, SRC, EVOLVABLE, full_rewrite=True)
    assert edit.kind == "rewrite" and edit.source == new
    assert edit.patch.startswith("--- a/src/kernel.rs\n+++ b/src/kernel.rs\n") and "+    a.wrapping_sub(b)" in edit.patch
    with pytest.raises(EditRejected, match=r"2 ```rust blocks"):
        apply_response(text + text, SRC, EVOLVABLE, full_rewrite=True)
    with pytest.raises(EditRejected, match=r"changes nothing"):
        apply_response(f"```rust\n{SRC}```\n", SRC, EVOLVABLE, full_rewrite=True)


def test_blocks_win_over_a_fence_when_both_are_present() -> None:
    text = "```rust\nfn unrelated() {}\n```\n" + block("    a - b\n", "    b - a\n")
    edit = apply_response(text, SRC, EVOLVABLE, full_rewrite=True)
    assert edit.kind == "blocks" and "    b - a\n" in edit.source


def test_last_line_without_newline() -> None:
    src = SRC.rstrip("\n")
    edit = apply_response(block("    a - b\n}\n", "    b - a\n}\n"), src, EVOLVABLE)
    assert edit.source.endswith("    b - a\n}")


def test_rendered_patch_parses_back() -> None:
    blocks = [EditBlock("    a + b\n", "    a ^ b\n", "src/kernel.rs"), EditBlock("    a - b\n", "    a & b\n", "src/kernel.rs")]
    assert parse_blocks(render_blocks(blocks, EVOLVABLE)) == blocks
    assert apply_blocks(SRC, parse_blocks(render_blocks(blocks, EVOLVABLE)), EVOLVABLE) == apply_blocks(SRC, blocks, EVOLVABLE)


def test_edit_of_the_real_template() -> None:
    src = template_kernel()
    line = next(ln for ln in src.splitlines(keepends=True) if ln.strip() and not ln.lstrip().startswith("//") and src.count(ln) == 1)
    edit = apply_response(f"{EVOLVABLE}\n" + block(line, "// evolved\n" + line), src, EVOLVABLE)
    assert edit.source == src.replace(line, "// evolved\n" + line)
    assert len(edit.source.encode()) <= MAX_EVOLVABLE_BYTES

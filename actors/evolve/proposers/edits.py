"""Edits a model answers with, parsed and applied to the evolvable file only.

The format is aider's / OpenEvolve's SEARCH/REPLACE block, optionally preceded by the
file's path (alone on its line, possibly outside a code fence)::

    src/kernel.rs
    <<<<<<< SEARCH
    exact lines of the current file
    =======
    what replaces them
    >>>>>>> REPLACE

Blocks apply in order, each to the text left by the ones before it. Everything that can go
wrong raises ``EditRejected`` with a message written for the model (it is fed back for a
corrected edit): a block naming another file, SEARCH text absent or present more than
once, an empty edit, a result over 64 KB, or a construct that would reach outside the file
(``include!``, ``#[path]``, out-of-line ``mod``, ``extern`` blocks, new exports). A full
rewrite (one fenced ```rust block holding the whole file) is accepted only when the request
allows it. Pure text processing: no file is read or written here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from actors.errors import EditRejected

MAX_EVOLVABLE_BYTES = 64 * 1024
"""The evolvable file must stay within 64 KB (the template is about 14 KB; the largest catalogue genome about 30 KB)."""

_HEAD = re.compile(r"^\s*<{5,9} SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_UPDATED = re.compile(r"^\s*>{5,9} REPLACE\s*$")
_FENCE = re.compile(r"^\s*```")
_PATHLIKE = re.compile(r"^[\w.\-/\\]+\.[A-Za-z0-9]+$")
_RUST_FENCE = re.compile(r"^```(?:rust|rs)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

FORBIDDEN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\binclude(?:_str|_bytes)?\s*!"), "include!/include_str!/include_bytes! read other files at compile time"),
    (re.compile(r"#\s*\[\s*path\b"), "#[path] makes a module of another file"),
    (
        re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*;", re.MULTILINE),
        "an out-of-line `mod name;` reads another file (inline modules `mod name { ... }` are fine)",
    ),
    (re.compile(r"\b(?:option_)?env\s*!"), "env!/option_env! read the build machine's environment"),
    (re.compile(r'\bextern\s*(?:"[^"]*"\s*)?\{'), "an extern block declares imports, and a kernel may import nothing"),
    (
        re.compile(r"#\s*\[\s*(?:link\b|no_mangle\b|export_name\b|unsafe\s*\(\s*(?:no_mangle|export_name))"),
        "#[link]/#[no_mangle]/#[export_name] change the module's imports or exports",
    ),
    (re.compile(r"\b(?:global_)?asm\s*!"), "inline assembly is not allowed"),
)
"""Constructs an edit may not introduce, with the reason given to the model."""


@dataclass(frozen=True)
class EditBlock:
    """One SEARCH/REPLACE block; ``path`` as the model wrote it, or None."""

    search: str
    replace: str
    path: str | None = None


@dataclass(frozen=True)
class AppliedEdit:
    """The new evolvable file and the patch recorded for it."""

    source: str
    patch: str
    kind: Literal["blocks", "rewrite"]


def _path_before(lines: Sequence[str], i: int) -> str | None:
    """The file path on the line before a SEARCH marker (or before the fence opening it)."""
    for j in (i - 1, i - 2):
        if j < 0:
            return None
        s = lines[j].strip()
        if _FENCE.match(s):
            continue
        s = s.strip("`*").rstrip(":").strip()
        return s if _PATHLIKE.match(s) else None
    return None


def parse_blocks(text: str) -> list[EditBlock]:
    """Every SEARCH/REPLACE block of ``text``, in order; malformed markers raise ``EditRejected``."""
    lines = text.splitlines(keepends=True)
    blocks: list[EditBlock] = []
    i = 0
    while i < len(lines):
        if _UPDATED.match(lines[i]):
            raise EditRejected(f"line {i + 1}: '>>>>>>> REPLACE' without a '<<<<<<< SEARCH' before it")
        if not _HEAD.match(lines[i]):
            i += 1
            continue
        n = len(blocks) + 1
        path = _path_before(lines, i)
        search: list[str] = []
        j = i + 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            if _HEAD.match(lines[j]) or _UPDATED.match(lines[j]):
                raise EditRejected(f"block {n} (line {i + 1}): '=======' missing between '<<<<<<< SEARCH' and line {j + 1}")
            search.append(lines[j])
            j += 1
        if j == len(lines):
            raise EditRejected(f"block {n} (line {i + 1}): '=======' missing after '<<<<<<< SEARCH'")
        replace: list[str] = []
        k = j + 1
        while k < len(lines) and not _UPDATED.match(lines[k]):
            if _HEAD.match(lines[k]) or _DIVIDER.match(lines[k]):
                raise EditRejected(f"block {n} (line {i + 1}): '>>>>>>> REPLACE' missing before line {k + 1}")
            replace.append(lines[k])
            k += 1
        if k == len(lines):
            raise EditRejected(f"block {n} (line {i + 1}): '>>>>>>> REPLACE' missing (was the answer cut short?)")
        blocks.append(EditBlock("".join(search), "".join(replace), path))
        i = k + 1
    return blocks


def _check_path(path: str | None, evolvable: str, n: int) -> None:
    if path is None:
        return
    p = path.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    ok = ".." not in PurePosixPath(p).parts and (p == evolvable or p.endswith("/" + evolvable) or p == PurePosixPath(evolvable).name)
    if not ok:
        raise EditRejected(
            f"block {n} names {path!r}: only {evolvable} may change (every other file of the crate is regenerated, and the shared crates are fixed)"
        )


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _positions(text: str, needle: str) -> list[int]:
    """Every start of ``needle`` in ``text`` at the start of a line (SEARCH quotes whole
    lines: a match inside a line would replace something the model did not mean)."""
    out: list[int] = []
    pos = text.find(needle)
    while pos != -1:
        if pos == 0 or text[pos - 1] == "\n":
            out.append(pos)
        pos = text.find(needle, pos + 1)
    return out


def _not_found_hint(current: str, original: str, search: str, n: int, evolvable: str) -> str:
    """Why a SEARCH text did not match, as precisely as cheap checks allow."""
    msg = f"block {n}: the SEARCH text is not in {evolvable}"
    if n > 1 and original.count(search) == 1:
        return msg + " any more: an earlier block of the same answer already changed those lines (blocks apply in order)"
    for idx, line in enumerate(search.splitlines()):
        if line.strip() and line not in current.splitlines():
            hint = f"; its line {idx + 1} ({line.strip()[:80]!r}) does not occur"
            if line.strip() in current:
                hint += " with that indentation"
            return msg + hint + ". Copy the lines exactly as they are in the current file"
    squash = re.compile(r"\s+")
    if squash.sub(" ", search).strip() in squash.sub(" ", current):
        return msg + "; it matches only if whitespace is ignored. Copy the lines exactly, indentation and blank lines included"
    return msg + "; each of its lines occurs, but not consecutively in this order. Copy a contiguous run of lines exactly"


def apply_blocks(source: str, blocks: Sequence[EditBlock], evolvable: str) -> str:
    """``source`` with every block applied in order; raises ``EditRejected`` on any problem."""
    if not blocks:
        raise EditRejected(f"the answer holds no SEARCH/REPLACE block: answer with blocks against {evolvable}")
    cur = source
    for n, b in enumerate(blocks, 1):
        _check_path(b.path, evolvable, n)
        if not b.search.strip():
            raise EditRejected(
                f"block {n}: SEARCH is empty; quote the exact lines of {evolvable} to replace "
                "(to add code, quote the lines next to it and repeat them in REPLACE)"
            )
        if b.search == b.replace:
            continue
        search, replace = b.search, b.replace
        where = _positions(cur, search)
        if not where and search.endswith("\n") and not cur.endswith("\n") and cur.endswith(search[:-1]):
            # The file's last line has no newline; the block quoted it with one.
            search, replace = search[:-1], replace.removesuffix("\n")
            where = _positions(cur, search)
        if not where:
            raise EditRejected(_not_found_hint(cur, source, search, n, evolvable))
        if len(where) > 1:
            lines = ", ".join(str(_line_of(cur, p)) for p in where[:8])
            raise EditRejected(f"block {n}: the SEARCH text occurs {len(where)} times (at lines {lines}); include more surrounding lines so it matches once")
        p = where[0]
        cur = cur[:p] + replace + cur[p + len(search) :]
    return cur


def parse_full_rewrite(text: str) -> str | None:
    """The whole file from a single fenced ```rust block, or None when there is none."""
    found = _RUST_FENCE.findall(text)
    if not found:
        return None
    if len(found) > 1:
        raise EditRejected(f"the answer holds {len(found)} ```rust blocks; a full rewrite is exactly one block holding the whole file")
    body: str = found[0]
    return body if body.endswith("\n") else body + "\n"


def check_source(new: str, old: str, evolvable: str) -> None:
    """Size and forbidden constructs of a proposed file; a construct already in ``old`` is
    tolerated (the rule is about what an edit introduces)."""
    size = len(new.encode())
    if size > MAX_EVOLVABLE_BYTES:
        raise EditRejected(
            f"the edited {evolvable} would be {size} bytes; it must stay within {MAX_EVOLVABLE_BYTES} bytes (64 KB): "
            "make it shorter (drop dead code, long comments)"
        )
    if new == old:
        raise EditRejected(f"the edit changes nothing in {evolvable}")
    new_code, old_code = strip_comments(new), strip_comments(old)
    for pattern, why in FORBIDDEN:
        m = pattern.search(new_code)
        if m and not pattern.search(old_code):
            raise EditRejected(f"the edit introduces {m.group(0).strip()!r} at line {_line_of(new_code, m.start())}: {why}")


def strip_comments(src: str) -> str:
    """``src`` with ``//`` and ``/* */`` comments blanked (newlines kept, so line numbers hold).
    String literals are not tracked: a ``//`` inside one hides the rest of that line, which
    can only let a construct through that the build or the validator then refuses."""
    src = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), src, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", src)


def render_blocks(blocks: Sequence[EditBlock], evolvable: str) -> str:
    """Blocks in canonical form (the path named once per block): the recorded patch."""
    out = []
    for b in blocks:
        search = b.search if b.search.endswith("\n") or not b.search else b.search + "\n"
        replace = b.replace if b.replace.endswith("\n") or not b.replace else b.replace + "\n"
        out.append(f"{evolvable}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n")
    return "\n".join(out)


def unified_diff(old: str, new: str, evolvable: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{evolvable}", f"b/{evolvable}"))


def apply_response(text: str, source: str, evolvable: str, *, full_rewrite: bool = False) -> AppliedEdit:
    """The model's answer ``text`` applied to ``source``: SEARCH/REPLACE blocks when there
    are any, else (only if ``full_rewrite``) one fenced ```rust block as the whole file."""
    blocks = parse_blocks(text)
    if blocks:
        new = apply_blocks(source, blocks, evolvable)
        check_source(new, source, evolvable)
        return AppliedEdit(new, render_blocks([b for b in blocks if b.search != b.replace], evolvable), "blocks")
    rewrite = parse_full_rewrite(text)
    if rewrite is None:
        how = "SEARCH/REPLACE blocks" + (" or one ```rust block with the whole file" if full_rewrite else "")
        raise EditRejected(f"the answer holds no edit: answer with {how} against {evolvable}")
    if not full_rewrite:
        raise EditRejected(f"a full rewrite is not accepted for this request: answer with SEARCH/REPLACE blocks against {evolvable}")
    check_source(rewrite, source, evolvable)
    return AppliedEdit(rewrite, unified_diff(source, rewrite, evolvable), "rewrite")

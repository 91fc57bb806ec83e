"""The sync check: the Verus copy's executable bodies equal the shipped functions."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.verify.proofs.check import Check
from actors.verify.proofs.sources import CODEC_DIR, VERUS_DIR

# The shipped functions the Verus copy must contain (`// sync: <file>::<fn>` markers).
REQUIRED_SYNC = (
    "src/varint.rs::read_uvarint",
    "src/varint.rs::read_count",
    "src/svb.rs::control_len",
    "src/svb.rs::value_len",
    "src/svb.rs::data_len",
    "src/svb.rs::decode_with",
    "src/payload.rs::new",
    "src/payload.rs::read_strings",
    "src/payload.rs::read_count_of",
    "src/payload.rs::read_id",
    "src/payload.rs::next_series",
    "src/payload.rs::read_timestamps",
)


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>//[^\n]*)
      | (?P<str>b?"(?:\\.|[^"\\])*")
      | (?P<char>b?'(?:\\.|[^'\\])')
      | (?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)
      | (?P<num>\d[0-9_]*(?:\.\d[0-9_]*)?[A-Za-z0-9_]*)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct><<=|>>=|\.\.=|\.\.\.|::|->|=>|==|!=|<=|>=|&&|\|\||\+=|-=|\*=|/=|%=|\^=|&=|\|=|<<|>>|\.\.|[^\sA-Za-z0-9_])""",
    re.VERBOSE,
)
_SPEC_CLAUSES = {"requires", "ensures", "recommends", "decreases", "returns", "opens_invariants", "no_unwind", "invariant", "invariant_except_break"}
_CHEATS = {"assume", "admit", "external_body", "external", "assume_specification"}


@dataclass(frozen=True)
class Tok:
    text: str
    line: int


def tokenize(src: str) -> list[Tok]:
    """Rust (and Verus) tokens without whitespace and comments (nested block comments too)."""
    toks: list[Tok] = []
    i, line = 0, 1
    while i < len(src):
        if src.startswith("/*", i):
            depth, j = 0, i
            while j < len(src):
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                    if depth == 0:
                        break
                else:
                    j += 1
            line += src.count("\n", i, j)
            i = j
            continue
        m = _TOKEN.match(src, i)
        if m is None:  # pragma: no cover - the last alternative matches any character
            raise ValueError(f"cannot tokenize at line {line}")
        if m.lastgroup not in ("ws", "comment"):
            toks.append(Tok(m.group(), line))
        line += m.group().count("\n")
        i = m.end()
    return toks


def _skip_balanced(toks: Sequence[Tok], i: int) -> int:
    """Index after the bracket group opening at ``toks[i]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[toks[i].text]]
    i += 1
    while stack:
        t = toks[i].text
        if t in pairs:
            stack.append(pairs[t])
        elif t == stack[-1]:
            stack.pop()
        i += 1
    return i


def _skip_to_block(toks: Sequence[Tok], i: int) -> int:
    """Index of the next ``{`` outside parentheses and brackets (where a spec clause ends)."""
    while toks[i].text != "{":
        i = _skip_balanced(toks, i) if toks[i].text in "([" else i + 1
    return i


def _strip_verus(toks: Sequence[Tok]) -> list[str]:
    """Token texts with attributes and Verus-only text removed (a no-op on plain Rust)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i].text
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        if t == "#" and nxt in ("[", "!"):
            i = _skip_balanced(toks, i + (1 if nxt == "[" else 2))
        elif t == "proof" and nxt == "{":
            i = _skip_balanced(toks, i + 1)
        elif t in ("assert", "assume") and nxt == "(":
            i = _skip_balanced(toks, i + 1)
            if i < len(toks) and toks[i].text == "by":
                i += 1
                if toks[i].text == "(":
                    i = _skip_balanced(toks, i)
            if i < len(toks) and toks[i].text == "requires":
                while toks[i].text != ";":
                    i = _skip_balanced(toks, i) if toks[i].text in "([{" else i + 1
            if i < len(toks) and toks[i].text == "{":
                i = _skip_balanced(toks, i)
            if i < len(toks) and toks[i].text == ";":
                i += 1
        elif t == "let" and nxt in ("ghost", "tracked"):
            while toks[i].text != ";":
                i = _skip_balanced(toks, i) if toks[i].text in "([{" else i + 1
            i += 1
        elif t in _SPEC_CLAUSES:
            i = _skip_to_block(toks, i)
        elif t == "in" and i + 2 < len(toks) and re.fullmatch(r"[A-Za-z_]\w*", nxt) and toks[i + 2].text == ":":
            out.append("in")  # `for x in iter: e` names the ghost iterator
            i += 3
        elif t == "->" and nxt == "(" and i + 3 < len(toks) and re.fullmatch(r"[A-Za-z_]\w*", toks[i + 2].text) and toks[i + 3].text == ":":
            end = _skip_balanced(toks, i + 1)  # `-> (r: T)` names the return value
            out.append("->")
            out += _strip_verus(toks[i + 4 : end - 1])
            i = end
        else:
            out.append(t)
            i += 1
    return out


def _function(toks: Sequence[Tok], name: str) -> tuple[int, int] | None:
    """(start, end) token span of ``fn name ... { body }``; None when absent; ValueError when ambiguous."""
    starts = [i for i in range(len(toks) - 1) if toks[i].text == "fn" and toks[i + 1].text == name]
    if len(starts) > 1:
        raise ValueError(f"{len(starts)} functions named {name}")
    if not starts:
        return None
    body = _skip_to_block(toks, starts[0])
    return starts[0], _skip_balanced(toks, body)


@dataclass(frozen=True)
class SyncMarker:
    target: str
    """``src/<file>.rs::<fn>``"""
    line: int
    rewrites: tuple[tuple[str, str], ...]


def sync_markers(src: str) -> list[SyncMarker]:
    """``// sync: src/x.rs::f`` lines, each with the ``sync-rewrite-from``/``-to`` pairs after it."""
    markers: list[SyncMarker] = []
    pending: list[tuple[str, str]] = []
    current: tuple[str, int] | None = None
    frm: str | None = None

    def close() -> None:
        if current is not None:
            markers.append(SyncMarker(current[0], current[1], tuple(pending)))

    for n, raw in enumerate(src.splitlines(), 1):
        line = raw.strip()
        if line.startswith("// sync:"):
            close()
            current, pending, frm = (line.removeprefix("// sync:").strip(), n), [], None
        elif line.startswith("// sync-rewrite-from:"):
            frm = line.removeprefix("// sync-rewrite-from:").strip()
        elif line.startswith("// sync-rewrite-to:"):
            if frm is None:
                raise ValueError(f"line {n}: sync-rewrite-to without sync-rewrite-from")
            pending.append((frm, line.removeprefix("// sync-rewrite-to:").strip()))
            frm = None
    close()
    return markers


def _replace_once(seq: list[str], old: list[str], new: list[str]) -> list[str] | None:
    hits = [i for i in range(len(seq) - len(old) + 1) if seq[i : i + len(old)] == old] if old else []
    if len(hits) != 1:
        return None
    return seq[: hits[0]] + new + seq[hits[0] + len(old) :]


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - 6)
    return f"shipped `{' '.join(a[lo : i + 6])}` vs verus `{' '.join(b[lo : i + 6])}`"


def compare_sync(codec_dir: Path, verus_dir: Path) -> tuple[list[str], list[str]]:
    """(problems, functions compared) for every ``// sync:`` marker in ``verus_dir``."""
    problems: list[str] = []
    compared: list[str] = []
    shipped_cache: dict[str, list[Tok]] = {}
    for vfile in sorted(verus_dir.glob("*.rs")):
        vsrc = vfile.read_text()
        vtoks = tokenize(vsrc)
        for m in sync_markers(vsrc):
            file, _, name = m.target.partition("::")
            where = f"{m.target} ({vfile.name}:{m.line})"
            nxt = next((i for i, t in enumerate(vtoks) if t.line > m.line and t.text == "fn"), None)
            if nxt is None or nxt + 1 >= len(vtoks) or vtoks[nxt + 1].text != name:
                problems.append(f"{where}: the marker is not followed by `fn {name}`")
                continue
            if not (codec_dir / file).is_file():
                problems.append(f"{where}: no shipped file {file}")
                continue
            stoks = shipped_cache.setdefault(file, tokenize((codec_dir / file).read_text()))
            try:
                span = _function(stoks, name)
            except ValueError as e:
                problems.append(f"{where}: shipped {e}")
                continue
            if span is None:
                problems.append(f"{where}: no `fn {name}` in shipped {file}")
                continue
            vend = _skip_balanced(vtoks, _skip_to_block(vtoks, nxt))
            head = nxt  # the attributes and qualifiers before `fn` count for the cheat scan
            while head > 0 and vtoks[head - 1].text not in ("}", ";", "{"):
                head -= 1
            vraw = [t.text for t in vtoks[head:vend]]
            cheats = sorted(_CHEATS.intersection(vraw))
            if cheats:
                problems.append(f"{where}: the verus copy uses {', '.join(cheats)}")
                continue
            shipped = _strip_verus(stoks[span[0] : span[1]])
            for k, (frm, to) in enumerate(m.rewrites, 1):
                rewritten = _replace_once(shipped, [t.text for t in tokenize(frm)], [t.text for t in tokenize(to)])
                if rewritten is None:
                    problems.append(f"{where}: sync-rewrite #{k} `{frm}` does not occur exactly once in the shipped function")
                    break
                shipped = rewritten
            else:
                copy = _strip_verus(vtoks[nxt:vend])
                if copy != shipped:
                    problems.append(f"{where}: bodies differ: {_first_difference(shipped, copy)}")
                else:
                    compared.append(m.target)
    seen = {m.target for f in verus_dir.glob("*.rs") for m in sync_markers(f.read_text())}
    problems += [f"{t}: no verus copy (no `// sync: {t}` marker)" for t in REQUIRED_SYNC if t not in seen]
    return problems, compared


def check_sync(codec_dir: Path = CODEC_DIR, verus_dir: Path = VERUS_DIR) -> Check:
    t0 = time.monotonic()
    try:
        problems, compared = compare_sync(codec_dir, verus_dir)
    except (OSError, ValueError, IndexError) as e:
        problems, compared = [f"cannot compare: {type(e).__name__}: {e}"], []
    py = f"python {sys.version.split()[0]}"
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("sync:verus-copy", "sync", "failed", problems[0] + more, time.monotonic() - t0, py)
    reason = (
        f"the executable bodies of {len(compared)} verus functions equal the shipped codec's token for token"
        " (specs and proof code stripped, declared rewrites applied)"
    )
    return Check("sync:verus-copy", "sync", "passed", reason, time.monotonic() - t0, py)

"""The query language: ``<agg>:<metric>{<filter>} [by {<keys>}]``.

Grammar (whitespace allowed between tokens)::

    query   := agg ':' metric '{' filter '}' [ 'by' '{' key (',' key)* '}' ]
    agg     := 'sum' | 'min' | 'max' | 'avg' | 'count'
    metric  := [A-Za-z0-9_./-]+
    filter  := '*' | term (',' term)*
    term    := ['!'] ( key ':' value | key ':' prefix '*' | bare )

A tag is ``key:value`` (split at the first ``:``) or bare (no ``:``). ``key:value``
and ``bare`` terms match a series carrying exactly that tag; ``key:pre*`` matches a
series with a ``key`` tag whose value starts with ``pre`` (``key:*``: any value);
``!`` negates a term; terms are ANDed. Parse errors raise :class:`QueryError` naming
the query, the 1-based column and what was expected there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from actors.errors import QueryError

AGGS = ("sum", "min", "max", "avg", "count")
MISSING = "N/A"
_METRIC = re.compile(r"[A-Za-z0-9_./-]+")
_WORD = re.compile(r"[a-z]+")
_TOKEN = re.compile(r"[^,{}\s]+")
_KEY = re.compile(r"[^,{}\s:*!]+")


@dataclass(frozen=True)
class Term:
    """One filter term: an exact tag (``tag``) or a key/value-prefix pair."""

    negated: bool
    tag: str | None = None
    key: str | None = None
    prefix: str | None = None

    @property
    def is_prefix(self) -> bool:
        return self.key is not None

    def text(self) -> str:
        body = f"{self.key}:{self.prefix}*" if self.is_prefix else str(self.tag)
        return ("!" if self.negated else "") + body


@dataclass(frozen=True)
class Query:
    """A parsed query. ``filter`` is empty for ``{*}``; ``by`` is in output order."""

    id: str
    agg: str
    metric: str
    filter: tuple[Term, ...]
    by: tuple[str, ...]

    def text(self) -> str:
        flt = ",".join(t.text() for t in self.filter) or "*"
        by = f" by {{{','.join(self.by)}}}" if self.by else ""
        return f"{self.agg}:{self.metric}{{{flt}}}{by}"


class _Scanner:
    def __init__(self, query_id: str, text: str) -> None:
        self.id = query_id
        self.text = text
        self.pos = 0

    def fail(self, expected: str, at: int | None = None) -> QueryError:
        at = self.pos if at is None else at
        found = repr(self.text[at]) if at < len(self.text) else "end of query"
        return QueryError(self.id, self.text, at + 1, f"expected {expected}, found {found}")

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str, what: str) -> None:
        self.ws()
        if self.peek() != ch:
            raise self.fail(what)
        self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.text, self.pos)
        if not m:
            return ""
        self.pos = m.end()
        return m.group(0)


def parse_query(text: str, query_id: str = "q0") -> Query:
    """Parses one query; raises :class:`QueryError` on any error."""
    s = _Scanner(query_id, text)
    s.ws()
    at = s.pos
    agg = s.match(_WORD)
    if agg not in AGGS:
        raise QueryError(query_id, text, at + 1, f"expected an aggregation ({', '.join(AGGS)}), found {agg or s.peek() or 'end of query'!r}")
    s.expect(":", "':' after the aggregation")
    s.ws()
    metric = s.match(_METRIC)
    if not metric:
        raise s.fail("a metric name (letters, digits, '_', '.', '/', '-')")
    s.expect("{", "'{' to open the filter")
    s.ws()
    terms: list[Term] = []
    if s.peek() == "*":
        s.pos += 1
        s.expect("}", "'}' after '*'")
    else:
        while True:
            terms.append(_parse_term(s))
            s.ws()
            if s.peek() == ",":
                s.pos += 1
                s.ws()
                continue
            if s.peek() == "}":
                s.pos += 1
                break
            raise s.fail("',' or '}' after a filter term")
    s.ws()
    by: list[str] = []
    if s.pos < len(text):
        at = s.pos
        if s.match(_WORD) != "by":
            raise s.fail("'by {...}' or the end of the query", at)
        s.expect("{", "'{' after 'by'")
        while True:
            s.ws()
            at = s.pos
            key = s.match(_KEY)
            if not key:
                raise s.fail("a group-by tag key")
            if key in by:
                raise QueryError(query_id, text, at + 1, f"expected each group-by key once, found {key!r} twice")
            by.append(key)
            s.ws()
            if s.peek() == ",":
                s.pos += 1
                continue
            if s.peek() == "}":
                s.pos += 1
                break
            raise s.fail("',' or '}' in the group-by list")
        s.ws()
        if s.pos < len(text):
            raise s.fail("the end of the query")
    return Query(query_id, agg, metric, tuple(terms), tuple(by))


def _parse_term(s: _Scanner) -> Term:
    negated = s.peek() == "!"
    if negated:
        s.pos += 1
    at = s.pos
    tok = s.match(_TOKEN)
    if not tok or tok.startswith("!"):
        raise s.fail("a filter term (key:value, key:prefix*, a bare tag, or '*' alone)", at)
    star = tok.find("*")
    if star == -1:
        if tok.startswith(":"):
            raise s.fail("a tag key before ':'", at)
        return Term(negated, tag=tok)
    if star != len(tok) - 1:
        raise s.fail("'*' only at the end of a term", at + star + 1 if star + 1 < len(tok) else at + star)
    colon = tok.find(":")
    if colon <= 0:
        raise s.fail("'key:prefix*' (a '*' needs a key and ':' before it)", at)
    return Term(negated, key=tok[:colon], prefix=tok[colon + 1 : -1])

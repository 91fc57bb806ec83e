from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import QueryError
from actors.query import Term, parse_query


def test_parses_the_readme_example() -> None:
    q = parse_query("sum:cpu.usage{service:web,!env:staging} by {host,region}", "web_cpu")
    assert (q.id, q.agg, q.metric) == ("web_cpu", "sum", "cpu.usage")
    assert q.filter == (Term(False, tag="service:web"), Term(True, tag="env:staging"))
    assert q.by == ("host", "region")


def test_prefix_bare_and_wildcard() -> None:
    q = parse_query("  count : m.x { host:web-* , canary, !role:* }  ")
    assert q.filter == (Term(False, key="host", prefix="web-"), Term(False, tag="canary"), Term(True, key="role", prefix=""))
    assert parse_query("avg:m{*}").filter == ()
    assert parse_query("max:m{a:b:c}").filter == (Term(False, tag="a:b:c"),)


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("median:cpu{*}", 1, "an aggregation"),
        ("sum cpu{*}", 5, "':' after the aggregation"),
        ("sum:{*}", 5, "a metric name"),
        ("sum:cpu *", 9, "'{' to open the filter"),
        ("sum:cpu{}", 9, "a filter term"),
        ("sum:cpu{a:b", 12, "',' or '}'"),
        ("sum:cpu{a,}", 11, "a filter term"),
        ("sum:cpu{a*b:c}", 11, "'*' only at the end"),
        ("sum:cpu{ab*}", 9, "'key:prefix*'"),
        ("sum:cpu{a:b*c}", 13, "'*' only at the end"),
        ("sum:cpu{:x}", 9, "a tag key before ':'"),
        ("sum:cpu{*,a}", 10, "'}' after '*'"),
        ("sum:cpu{*} group {a}", 12, "'by {...}'"),
        ("sum:cpu{*} by {a,a}", 18, "each group-by key once"),
        ("sum:cpu{*} by {}", 16, "a group-by tag key"),
        ("sum:cpu{*} by {a} extra", 19, "the end of the query"),
        ("", 1, "an aggregation"),
    ],
)
def test_errors_name_query_column_and_expectation(text: str, column: int, expected: str) -> None:
    with pytest.raises(QueryError) as e:
        parse_query(text, "my_q")
    assert e.value.query_id == "my_q"
    assert e.value.column == column, str(e.value)
    assert expected in e.value.expected
    assert "my_q" in str(e.value) and f"column {column}" in str(e.value)


_word = st.text(alphabet="abcxyz019_-.", min_size=1, max_size=6)


@st.composite
def queries(draw: st.DrawFn) -> str:
    agg = draw(st.sampled_from(["sum", "min", "max", "avg", "count"]))
    metric = draw(_word)
    terms = draw(
        st.lists(
            st.one_of(
                st.builds(lambda k, v: f"{k}:{v}", _word, _word),
                st.builds(lambda k, v: f"{k}:{v}*", _word, st.text(alphabet="abc1", max_size=3)),
                _word,
            ).flatmap(lambda t: st.sampled_from([t, "!" + t])),
            max_size=4,
        )
    )
    by = draw(st.lists(_word, unique=True, max_size=3))
    text = f"{agg}:{metric}{{{','.join(terms) or '*'}}}"
    return text + (f" by {{{','.join(by)}}}" if by else "")


@given(queries())
def test_text_round_trips(text: str) -> None:
    q = parse_query(text)
    assert q.text() == text
    assert parse_query(q.text()) == q

"""A proposer backed by Claude through the real ``anthropic`` SDK (Messages API, tool use).

The model is not sent the crate: it gets the task, the parent's ``src/kernel.rs`` and what
is known about the parent, and explores the rest with tools (``list_files``, ``read_file``,
``grep`` over the crate, the shared crates and the inspirations; ``last_build_errors``,
``last_report``, ``profile``). The tool loop runs until the model answers without a tool
call, which must be SEARCH/REPLACE blocks (``edits.py``); on the last allowed turn tools
are switched off so that it has to answer. An edit that does not apply is fed back once
for a correction, then the proposal fails with ``EditRejected``.

Money and time are bounded by a ``Budget`` checked before every call (``BudgetExhausted``).
The SDK's own retries are off: 429, 529/overloaded and other 5xx (and lost connections)
are retried here with exponential backoff, so that each retry is logged and each attempt
checks the budget; the sleep is injectable. Every call's usage is logged and summed into
the proposal with its cost from ``PRICES``. Each turn resends the conversation, so the
request asks for prompt caching (``cache=True``): later turns read the prefix at a tenth
of the price.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.types import Message, MessageParam, TextBlockParam, ToolParam, ToolResultBlockParam

from actors.errors import EditRejected, ProposalFailed
from actors.evolve.proposers.base import Budget, Proposal, ProposalRequest
from actors.evolve.proposers.edits import MAX_EVOLVABLE_BYTES, apply_response
from actors.evolve.proposers.workspace import CrateView, ToolError

_logger = logging.getLogger(__name__)

PRICES: dict[str, tuple[float, float]] = {
    "claude-fable-5-2": (8.0, 40.0),
    "claude-fable-5-1": (10.0, 50.0),
    "claude-opus-5-5": (4.0, 20.0),
    "claude-opus-5": (5.0, 25.0),
    "claude-sonnet-5-5": (2.0, 10.0),
    "claude-sonnet-5": (2.0, 10.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-0": (15.0, 75.0),
    "claude-sonnet-4-0": (3.0, 15.0),
}
"""USD per million tokens (input, output), by model name without its date suffix. Cache
writes cost 1.25× input, cache reads 0.1× (5-minute cache). Tiered or unpublished prices
(Haiku 5.5, Opus 4.7/4.8) are left out: a model missing here costs 0, with a note, and the
token budget still bounds it; pass ``prices=`` to add one."""

TEXT_LIMIT = 40_000
"""Characters of build output, report or profile a tool returns at most."""
INLINE_LIMIT = 3_000
"""Characters of build output quoted in the first message (the tool has the rest)."""


def model_price(model: str, prices: Mapping[str, tuple[float, float]] = PRICES) -> tuple[float, float] | None:
    """(input, output) USD per Mtok of ``model``; a ``-YYYYMMDD`` or ``-latest`` suffix is ignored."""
    base = re.sub(r"-(?:\d{8}|latest)$", "", model)
    return prices.get(model) or prices.get(base)


def call_cost(price: tuple[float, float], usage: anthropic.types.Usage) -> float:
    pin, pout = price
    write = usage.cache_creation_input_tokens or 0
    read = usage.cache_read_input_tokens or 0
    return (usage.input_tokens * pin + write * pin * 1.25 + read * pin * 0.1 + usage.output_tokens * pout) / 1e6


TOOLS: list[ToolParam] = [
    {
        "name": "list_files",
        "description": "List the files you can read: the crate (src/kernel.rs is the only editable one), the shared crates under deps/, "
        "and other candidates' kernels under inspirations/. Optional path: a directory to list.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string", "description": "directory prefix, e.g. deps/tables"}}},
    },
    {
        "name": "read_file",
        "description": "Read a file, optionally a 1-based inclusive line range. Each line is prefixed by its number and a tab; "
        "that prefix is not part of the file and must not appear in SEARCH text.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "start_line": {"type": "integer", "minimum": 1}, "end_line": {"type": "integer", "minimum": 1}},
            "required": ["path"],
        },
    },
    {
        "name": "grep",
        "description": "Lines matching a Python regular expression, as path:line:<tab>text, in one file or under a directory (default: everything).",
        "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}}, "required": ["pattern"]},
    },
    {
        "name": "last_build_errors",
        "description": "The compiler output of the last failed build of this tenant's kernel, verbatim.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "last_report",
        "description": "The last verification report (JSON): each stage's status and reason.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "profile",
        "description": "Where the parent kernel's time goes, in microseconds per phase (JSON).",
        "input_schema": {"type": "object", "properties": {}},
    },
]


def header_rules(source: str) -> str:
    """The evolvable file's leading ``//!`` comment: its own statement of what it must keep."""
    out = []
    for line in source.splitlines():
        if not line.startswith("//!"):
            break
        out.append(line)
    return "\n".join(out)


def system_prompt(req: ProposalRequest) -> str:
    """The task, the rules and the answer format; the tenant-specific facts go in the first message."""
    ev = req.evolvable
    rewrite = f"\nYou may instead answer with the whole new {ev} in a single ```rust block.\n" if req.full_rewrite else ""
    return f"""You improve the performance of one tenant's WebAssembly aggregation kernel in evoagg (Rust, no_std + alloc, wasm32).

Goal: make {ev} faster (messages per second inside the kernel) while keeping its semantics bit-exact. Every candidate
is built, validated, run side by side with the generic kernel on edge-case and held-back traffic (malformed payloads,
NaN, ±inf, -0.0, subnormals, late points, missing and multi-valued tags, prefix and negated filters) and benchmarked.
Any difference in rows, counts or rejection reasons rejects it; so does being slower.

Rules:
- Only {ev} may change. src/spec.rs (the tenant's constants), src/lib.rs and Cargo.toml are regenerated; the shared
  crates under deps/ (codec, abi, tables) are fixed. Use what they export; add no dependency.
- Keep what lib.rs and the abi crate use from {ev} (the kernel type and its trait implementation).
- Stay within {MAX_EVOLVABLE_BYTES} bytes. No include!/include_str!, #[path], out-of-line `mod x;`, env!, extern blocks,
  #[no_mangle]/#[export_name] or asm: the module may import nothing and export only the ABI.
- Exact floating point: the same operations in the same order (sums fold from +0.0 in arrival order; min/max replace
  only on strict < / >; avg = sum / count).
- The rules stated in the file's own header:
{header_rules(req.parent_source)}

Tools: list_files, read_file (line-number prefixes are not part of the file), grep, last_build_errors, last_report,
profile. Read what you need, then answer without calling a tool.

Answer: one or two sentences on the idea, then SEARCH/REPLACE blocks, each exactly like this:

{ev}
<<<<<<< SEARCH
exact, contiguous lines of the current file (unique in it)
=======
the lines that replace them
>>>>>>> REPLACE

SEARCH text must match the current file character for character, indentation included, and occur once. Blocks apply
in order. Make one coherent improvement, not a sweep of unrelated changes.{rewrite}"""


def _cut(text: str, limit: int, hint: str) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters; {hint}]"


def _report_summary(report: dict[str, Any]) -> str:
    """The stages of a report that did not pass, one a line (the tool has the whole report)."""
    lines = [f"accepted: {report.get('accepted')}"]
    for s in report.get("stages", []) or []:
        if isinstance(s, dict) and s.get("status") != "passed":
            lines.append(f"- {s.get('name')}: {s.get('status')}: {str(s.get('reason') or '')[:500]}")
    return "\n".join(lines)


def first_message(req: ProposalRequest, view: CrateView) -> str:
    """What the model is told up front: the parent, the feedback, the inspirations, the file."""
    ev = req.evolvable
    parts = [
        f"Tenant org {req.org}. Parent candidate: {req.parent_id or '(the specialized template)'}.",
        f"Parent metrics: {json.dumps(req.parent_metrics, sort_keys=True, default=str)}",
    ]
    if req.last_build_errors:
        quoted = _cut(req.last_build_errors, INLINE_LIMIT, "call last_build_errors for all of it")
        parts.append(f"The last attempt did not build. Compiler output (also from the last_build_errors tool):\n```\n{quoted}\n```")
    if req.last_report:
        parts.append(f"The last verification report (the whole report from last_report):\n{_report_summary(req.last_report)}")
    if req.failed_source is not None:
        diff = "".join(difflib.unified_diff(req.parent_source.splitlines(True), req.failed_source.splitlines(True), f"parent/{ev}", f"failed/{ev}", n=2))
        parts.append(
            f"The last child of this parent that failed, as a diff against the parent:\n```diff\n{_cut(diff, INLINE_LIMIT * 2, 'the diff is cut')}\n```"
        )
    if req.workload:
        stats = {k: v for k, v in req.workload.items() if k != "gene_weights"}
        parts.append(f"The tenant's traffic, from the training sample (never the held-back one): {json.dumps(stats, sort_keys=True)}")
    if req.profile:
        parts.append(
            f"Where the parent's time goes, µs per phase (also from profile): {_cut(json.dumps(req.profile, sort_keys=True), INLINE_LIMIT, 'call profile')}"
        )
    if req.inspirations:
        rows = [f"- {cid}: {json.dumps(m, sort_keys=True, default=str)}; read it at {view.inspirations[cid]}" for cid, _, m in req.inspirations]
        parts.append("Other candidates for inspiration:\n" + "\n".join(rows))
    parts.append(f"The current {ev} ({len(req.parent_source.splitlines())} lines, {len(req.parent_source.encode())} bytes):\n```rust\n{req.parent_source}\n```")
    parts.append("Explore what you need with the tools, then answer with your edit.")
    return "\n\n".join(parts)


@dataclass
class _Spend:
    """What one proposal cost, summed over its calls."""

    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    calls: int = 0
    retries: int = 0
    tools: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _int_arg(args: Mapping[str, Any], key: str) -> int | None:
    v = args.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | str) or (isinstance(v, str) and not v.strip().isdigit()):
        raise ToolError(f"{key} must be a positive integer, got {v!r}")
    return int(v)


class AnthropicProposer:
    """Proposes with a Claude model; see the module docstring. ``log`` receives one line per
    call (usage, cost), per retry and per rejected edit."""

    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 16384,
        budget: Budget,
        max_turns: int = 12,
        log: Callable[[str], None] | None = None,
        max_retries: int = 5,
        backoff_s: float = 2.0,
        max_backoff_s: float = 60.0,
        jitter: float = 0.25,
        timeout_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        prices: Mapping[str, tuple[float, float]] = PRICES,
        cache: bool = True,
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.model = model
        self.api_key = api_key
        self.base_url = base_url
        self.max_tokens = max_tokens
        self.budget = budget
        self.max_turns = max_turns
        self.log: Callable[[str], None] = log or _logger.info
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.jitter = jitter
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.prices = dict(prices)
        self.cache = cache
        self._jitter_rng = random.Random()
        self._client: anthropic.Anthropic | None = None
        self._model_ok = False

    def __getstate__(self) -> dict[str, Any]:
        # The HTTP client does not pickle; a copy in another process makes its own.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def client(self) -> anthropic.Anthropic:
        """The SDK client, made on first use; the key from the environment is read then (so
        that a pickled proposer carries no key it was not given)."""
        if self._client is None:
            key = self.api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise ProposalFailed("no Anthropic API key: pass api_key or set ANTHROPIC_API_KEY")
            self._client = anthropic.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)
        return self._client

    # -- one call, with retries -------------------------------------------------------------

    def _delay(self, attempt: int, err: anthropic.APIError) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        if self.jitter:
            delay *= 1 - self.jitter * self._jitter_rng.random()
        if isinstance(err, anthropic.APIStatusError):
            with contextlib.suppress(ValueError):
                delay = max(delay, min(self.max_backoff_s, float(err.response.headers.get("retry-after", 0))))
        return delay

    @staticmethod
    def _retryable(err: anthropic.APIError) -> bool:
        if isinstance(err, anthropic.APIConnectionError):
            return True
        if isinstance(err, anthropic.APIStatusError):
            return err.status_code == 429 or err.status_code >= 500 or err.type in ("overloaded_error", "rate_limit_error", "api_error")
        return False

    def _call(self, system: str, messages: list[MessageParam], spend: _Spend, tools_off: bool) -> Message:
        """One Messages call: budget checked before each attempt, retryable failures retried
        with backoff (each logged), usage logged and charged."""
        for attempt in range(self.max_retries + 1):
            self.budget.check()
            t0 = time.monotonic()
            try:
                resp = self.client().messages.create(
                    model=self.model,
                    max_tokens=self.max_tokens,
                    system=system,
                    messages=messages,
                    tools=TOOLS,
                    tool_choice={"type": "none"} if tools_off else {"type": "auto"},
                    cache_control={"type": "ephemeral"} if self.cache else anthropic.omit,
                )
            except anthropic.APIError as e:
                what = f"{e.status_code} {e.type}: {e.api_message}" if isinstance(e, anthropic.APIStatusError) else f"{type(e).__name__}: {e}"
                if not self._retryable(e):
                    raise ProposalFailed(f"Anthropic API refused the request ({what})") from e
                if attempt == self.max_retries:
                    raise ProposalFailed(f"Anthropic API still failing after {attempt + 1} attempts ({what})") from e
                delay = self._delay(attempt, e)
                spend.retries += 1
                self.log(f"anthropic: attempt {attempt + 1}/{self.max_retries + 1} failed ({what}); retrying in {delay:.2f} s")
                self.sleep(delay)
                continue
            u = resp.usage
            tin = u.input_tokens + (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0)
            price = model_price(self.model, self.prices)
            usd = call_cost(price, u) if price else 0.0
            if price is None and not any(n.startswith("no price") for n in spend.notes):
                spend.notes.append(f"no price for model {self.model!r}: cost counted as 0")
            spend.tokens_in += tin
            spend.tokens_out += u.output_tokens
            spend.usd += usd
            spend.calls += 1
            self.budget.charge(tin, u.output_tokens, usd)
            self.log(
                f"anthropic: call {spend.calls} {resp.model} stop={resp.stop_reason} in={tin} out={u.output_tokens} ${usd:.4f} "
                f"({time.monotonic() - t0:.1f} s); proposal so far in={spend.tokens_in} out={spend.tokens_out} ${spend.usd:.4f}; "
                f"budget {self.budget.name}: {self.budget.tokens} tokens ${self.budget.usd:.4f}"
            )
            return resp
        raise AssertionError("unreachable")

    # -- tools ----------------------------------------------------------------------------

    def _tool(self, req: ProposalRequest, view: CrateView, name: str, args: Mapping[str, Any]) -> str:
        if name == "list_files":
            return view.list_files(args.get("path"))
        if name == "read_file":
            if not isinstance(args.get("path"), str):
                raise ToolError("read_file needs a path")
            return view.read_file(args["path"], _int_arg(args, "start_line"), _int_arg(args, "end_line"))
        if name == "grep":
            if not isinstance(args.get("pattern"), str):
                raise ToolError("grep needs a pattern")
            path = args.get("path")
            return view.grep(args["pattern"], path if isinstance(path, str) else None)
        if name == "last_build_errors":
            return _cut(req.last_build_errors, TEXT_LIMIT, "cut") if req.last_build_errors else "No build errors: the last attempt built."
        if name == "last_report":
            return _cut(json.dumps(req.last_report, indent=1, default=str), TEXT_LIMIT, "cut") if req.last_report else "No verification report yet."
        if name == "profile":
            return _cut(json.dumps(req.profile, indent=1, default=str), TEXT_LIMIT, "cut") if req.profile else "No profile available."
        raise ToolError(f"no tool {name!r}; the tools are {', '.join(t['name'] for t in TOOLS)}")

    def _run_tools(self, req: ProposalRequest, view: CrateView, resp: Message, spend: _Spend) -> list[ToolResultBlockParam]:
        results: list[ToolResultBlockParam] = []
        for b in resp.content:
            if b.type != "tool_use":
                continue
            spend.tools[b.name] = spend.tools.get(b.name, 0) + 1
            args = b.input if isinstance(b.input, dict) else {}
            try:
                results.append({"type": "tool_result", "tool_use_id": b.id, "content": self._tool(req, view, b.name, args)})
            except ToolError as e:
                results.append({"type": "tool_result", "tool_use_id": b.id, "content": str(e), "is_error": True})
        return results

    @staticmethod
    def _assistant_turn(resp: Message) -> MessageParam:
        """The model's turn as it goes back into the conversation: its content blocks as
        returned (thinking blocks with their signatures must come back unchanged when the
        model thinks between tool calls), less empty text blocks, which the API refuses."""
        content = [b for b in resp.content if not (b.type == "text" and not b.text)]
        if not content:
            return {"role": "assistant", "content": "(no answer)"}
        return {"role": "assistant", "content": content}

    # -- the loop -------------------------------------------------------------------------

    def check_model(self) -> None:
        """Checks, once per proposer, that the API offers the configured model (by id, or
        as the alias of a dated id); raises ``ProposalFailed`` naming the models it offers."""
        if self._model_ok:
            return
        try:
            ids = sorted(m.id for m in self.client().models.list(limit=1000))
        except anthropic.APIError as e:
            raise ProposalFailed(f"could not list the API's models to check {self.model!r}: {type(e).__name__}: {e}") from e
        if not any(i == self.model or i.startswith(self.model + "-") for i in ids):
            raise ProposalFailed(f"model {self.model!r} is not offered by this API; available: {', '.join(ids) or 'none'}")
        self._model_ok = True

    def propose(self, req: ProposalRequest, rng: random.Random) -> Proposal:
        """One proposal for ``req``. ``rng`` is not drawn from: the model's sampling cannot be
        seeded, and drawing would make the caller's other draws depend on this call. A
        failure carries what the attempt spent (``ProposalFailed.spent``)."""
        spend = _Spend()
        try:
            self.check_model()
            return self._propose(req, spend)
        except ProposalFailed as e:
            raise e.spent(spend.tokens_in, spend.tokens_out, spend.usd, self.model) from e.__cause__

    def _propose(self, req: ProposalRequest, spend: _Spend) -> Proposal:
        view = CrateView(req)
        system = system_prompt(req)
        first = first_message(req, view)
        messages: list[MessageParam] = [{"role": "user", "content": first}]
        rejected: str | None = None
        limit = self.max_turns
        turn = 0
        while True:
            turn += 1
            resp = self._call(system, messages, spend, tools_off=turn >= limit)
            messages.append(self._assistant_turn(resp))
            results = self._run_tools(req, view, resp, spend)
            if results:
                if turn >= limit:
                    raise ProposalFailed(f"no edit after {turn} turns: the model kept calling tools")
                follow: list[TextBlockParam | ToolResultBlockParam] = [*results]
                if turn + 1 == limit:
                    follow.append({"type": "text", "text": "Your next answer is the last: tools are off, answer with your edit."})
                messages.append({"role": "user", "content": follow})
                continue
            text = "".join(b.text for b in resp.content if b.type == "text")
            try:
                if resp.stop_reason == "max_tokens":
                    # A reply cut short is never applied, even when what arrived parses.
                    raise EditRejected(f"the answer was cut off at max_tokens ({self.max_tokens}) before it ended: answer with a shorter edit")
                edit = apply_response(text, req.parent_source, req.evolvable, full_rewrite=req.full_rewrite)
            except EditRejected as e:
                cut = " (your answer was cut off at max_tokens)" if resp.stop_reason == "max_tokens" else ""
                self.log(f"anthropic: edit rejected{cut}: {e}")
                if rejected is not None:
                    raise EditRejected(f"the corrected edit was rejected too: {e} (first: {rejected})") from e
                rejected = str(e)
                spend.notes.append(f"first edit rejected: {e}")
                limit = max(limit, turn + 1)
                messages.append(
                    {
                        "role": "user",
                        "content": f"Your edit was rejected and not applied{cut}: {e}\n\n"
                        f"{req.evolvable} is unchanged. Answer again with corrected SEARCH/REPLACE blocks.",
                    }
                )
                continue
            notes = [f"{spend.calls} calls, {spend.retries} retries", "tools: " + (", ".join(f"{k}×{v}" for k, v in sorted(spend.tools.items())) or "none")]
            return Proposal(
                source=edit.source,
                patch=edit.patch,
                prompt=f"{system}\n\n---\n\n{first}",
                proposer=self.name,
                model=self.model,
                tokens_in=spend.tokens_in,
                tokens_out=spend.tokens_out,
                cost_usd=spend.usd,
                notes="; ".join(notes + spend.notes),
            )

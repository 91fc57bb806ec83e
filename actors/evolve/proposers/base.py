"""What every proposer shares: the request it is given, the proposal it returns, the
protocol it implements, and the budget that bounds what it may spend.

A proposer turns a parent candidate (its evolvable ``src/kernel.rs`` and what is known about
it: metrics, the last build errors and verification report, a profile) into a new
evolvable file. It never builds or verifies anything itself: the verifier pool does, and
its verdict comes back in the next request. Keeping proposers this narrow lets the
evolution loop swap an LLM for a deterministic mutator (or a test double) freely.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from actors.errors import BudgetExhausted


@dataclass(frozen=True)
class ProposalRequest:
    """Everything a proposer may look at for one proposal; frozen so that a request can be
    retried, logged or sent to another process unchanged."""

    org: int
    crate_dir: Path
    """The tenant's crate checked out at the parent (Cargo.toml, src/lib.rs, src/spec.rs, src/kernel.rs)."""
    evolvable: str
    """The only file an edit may touch, relative to the crate (``src/kernel.rs``)."""
    parent_id: str | None
    parent_source: str
    parent_metrics: dict[str, Any]
    """E.g. ``{"ratio_to_generic": 2.0, "msg_per_s": ...}``."""
    inspirations: tuple[tuple[str, str, dict[str, Any]], ...]
    """Other candidates worth a look: (candidate id, source, metrics)."""
    last_build_errors: str | None
    """Verbatim compiler output of the last failed attempt, fed back."""
    last_report: dict[str, Any] | None
    """The last verification report (rejection reasons), fed back."""
    profile: dict[str, Any] | None
    """Where time goes, µs per phase."""
    workload: dict[str, Any] | None = None
    """What the tenant's config and training sample say (``actors.evolve.stats``)."""
    failed_source: str | None = None
    """The source of the last child of this parent that failed (its errors are above)."""
    full_rewrite: bool = False
    """Whether a whole new file (a fenced ```rust block) is acceptable instead of SEARCH/REPLACE blocks."""


@dataclass(frozen=True)
class Proposal:
    """A new evolvable file and what it took to get it (recorded in the candidate database)."""

    source: str
    """The new evolvable file, full text."""
    patch: str
    """What changed: the SEARCH/REPLACE blocks, or a unified diff for a full rewrite."""
    prompt: str
    """What was asked (system prompt and first user message)."""
    proposer: str
    model: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    notes: str = ""
    genome: dict[str, Any] | None = None
    """The offline proposer's genome of the new source (None for other proposers)."""


@runtime_checkable
class Proposer(Protocol):
    """Anything that proposes. ``rng`` is the caller's, so that a seeded run is repeatable
    as far as the proposer allows (an LLM's sampling is not)."""

    name: str

    def propose(self, req: ProposalRequest, rng: random.Random) -> Proposal: ...


class Budget:
    """Spend allowed to proposers: tokens (in + out), USD and wall-clock seconds; ``None``
    means unlimited. One budget is shared by every proposer of a run and a child budget
    (``parent=``) per tenant: charging a child charges its parent, checking a child checks
    its parent, so a tenant cannot starve the others and the run cannot overspend in sum.

    ``check()`` is called before each API call and raises ``BudgetExhausted`` once a limit
    is reached; a call's spend is known only after it, so the last call may overshoot by
    at most its own usage. The clock is injected (monotonic seconds) so tests need no sleep.
    Thread-safe: proposers of several tenants may share one process.
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        max_seconds: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        parent: Budget | None = None,
        name: str = "run",
    ) -> None:
        self.max_tokens = max_tokens
        self.max_usd = max_usd
        self.max_seconds = max_seconds
        self.clock = clock
        self.parent = parent
        self.name = name
        self.started = clock()
        self.tokens_in = 0
        self.tokens_out = 0
        self.usd = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def child(self, name: str, max_tokens: int | None = None, max_usd: float | None = None, max_seconds: float | None = None) -> Budget:
        """A budget for one tenant, drawing on this one too (same clock)."""
        return Budget(max_tokens, max_usd, max_seconds, clock=self.clock, parent=self, name=name)

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def check(self) -> None:
        """Raises ``BudgetExhausted`` if this budget or an ancestor has reached a limit."""
        with self._lock:
            if self.max_tokens is not None and self.tokens >= self.max_tokens:
                raise BudgetExhausted("tokens", f"{self.name}: {self.tokens} of {self.max_tokens} tokens spent")
            if self.max_usd is not None and self.usd >= self.max_usd:
                raise BudgetExhausted("usd", f"{self.name}: ${self.usd:.4f} of ${self.max_usd:.4f} spent")
            if self.max_seconds is not None and self.elapsed >= self.max_seconds:
                raise BudgetExhausted("seconds", f"{self.name}: {self.elapsed:.1f} s of {self.max_seconds:.1f} s elapsed")
        if self.parent is not None:
            self.parent.check()

    def charge(self, tokens_in: int, tokens_out: int, usd: float) -> None:
        """Records one call's spend here and in every ancestor."""
        with self._lock:
            self.tokens_in += tokens_in
            self.tokens_out += tokens_out
            self.usd += usd
            self.calls += 1
        if self.parent is not None:
            self.parent.charge(tokens_in, tokens_out, usd)

    def spent(self) -> dict[str, Any]:
        """A snapshot for logs and reports."""
        with self._lock:
            return {
                "name": self.name,
                "calls": self.calls,
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
                "usd": self.usd,
                "seconds": self.elapsed,
            }

    def __getstate__(self) -> dict[str, Any]:
        # A lock does not pickle; a budget sent to another process is a copy anyway.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

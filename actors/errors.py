"""The exception tree of evoagg. Every error the package raises is one of these.

    EvoaggError
    ├── ConfigError             a tenant, workload or sandbox config is invalid
    │   └── QueryError          a query's text does not parse (names query, column, expectation)
    ├── PayloadError            a message cannot be encoded or decoded (carries a reason code)
    ├── StreamError             a stream file (.bin / .jsonl) is malformed
    ├── BuildFailed             compiling guest Rust to wasm failed (carries compiler output)
    ├── ModuleRejected          a wasm module fails validation (imports, exports, limits, features)
    ├── NotServed               a shard was asked about an org it does not serve (moved, never added)
    ├── StateError              a shard's checkpoint or journal, or the control plane's state, cannot be read
    ├── Unavailable             a part of the running system (shard, registry) does not answer
    ├── KernelError             a module misbehaved while running
    │   ├── KernelTrap          it trapped (panic, out-of-bounds, unreachable) on a batch
    │   ├── KernelTimeout       it ran past its deadline (epoch interruption) on a batch
    │   └── KernelOutOfMemory   it tried to grow memory beyond the store limit
    └── ProposalFailed          a proposer produced no candidate (API failing after retries, no edit in time)
        ├── EditRejected        the proposed edit is malformed, unsafe or does not apply (message fed back)
        └── BudgetExhausted     the run's or tenant's token, USD or time budget is spent (checked before a call)

Leaves are what callers catch; the root is for "anything from evoagg".
"""

from __future__ import annotations

from typing import Any


class EvoaggError(Exception):
    """Root of every error raised by evoagg."""


class ConfigError(EvoaggError):
    """A configuration (tenant, workload, sandbox) is invalid."""


class QueryError(ConfigError):
    """A query's text does not parse or validate.

    The message names the query, the 1-based column and what was expected there.
    """

    def __init__(self, query_id: str, text: str, column: int, expected: str) -> None:
        self.query_id = query_id
        self.text = text
        self.column = column
        self.expected = expected
        pointer = " " * (column - 1) + "^"
        super().__init__(f"query {query_id!r}, column {column}: {expected}\n  {text}\n  {pointer}")


class PayloadError(EvoaggError):
    """A message payload cannot be encoded or decoded.

    ``reason`` is one of ``actors.payload.REJECT_REASONS``' values (e.g. ``truncated``);
    ``offset`` the byte offset where it was detected, when known.
    """

    def __init__(self, reason: str, detail: str = "", offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{reason}{where}" + (f": {detail}" if detail else ""))


class StreamError(EvoaggError):
    """A stream file is malformed (bad magic, a frame running past the end, bad JSON)."""


class BuildFailed(EvoaggError):
    """Compiling a guest crate failed. ``output`` holds the compiler's messages verbatim."""

    def __init__(self, message: str, output: str = "") -> None:
        self.output = output
        super().__init__(message + (f"\n{output}" if output else ""))


class ModuleRejected(EvoaggError):
    """A wasm module was refused before use; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses Ray intact
        return (type(self), (self.reason, self.detail))


class NotServed(EvoaggError):
    """This shard does not serve the org: it moved elsewhere, or was never added here."""

    def __init__(self, org: int, shard: str) -> None:
        self.org = org
        self.shard = shard
        super().__init__(f"org {org} is not served by shard {shard}")

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # crosses Ray intact
        return (NotServed, (self.org, self.shard))


class StateError(EvoaggError):
    """A shard's checkpoint or journal is unreadable: recovery refuses to guess."""


class Unavailable(EvoaggError):
    """A part of the running system (a shard, the registry) does not answer: dead, still
    recovering, or starved of resources. The message names which, and why if known."""


class KernelError(EvoaggError):
    """A module misbehaved while running. ``batch`` names the batch it was given."""

    def __init__(self, message: str, batch: str = "") -> None:
        self.batch = batch
        super().__init__(f"{message}" + (f" (batch {batch})" if batch else ""))


class KernelTrap(KernelError):
    """The module trapped."""


class KernelTimeout(KernelError):
    """The module exceeded its per-call deadline."""


class KernelOutOfMemory(KernelError):
    """The module hit the store's memory limit."""


class ProposalFailed(EvoaggError):
    """A proposer could not produce a candidate. Raised as such when the model's API keeps
    failing after the retries or no edit came within the turn limit; the leaves say why
    more precisely where the caller acts differently (feed back, or stop proposing).

    What the attempt spent before it failed travels with it (``tokens_in``, ``tokens_out``,
    ``cost_usd``, ``model``), so a failed proposal is recorded with its cost too."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    model: str | None = None

    def spent(self, tokens_in: int, tokens_out: int, cost_usd: float, model: str | None) -> ProposalFailed:
        """This error with what the attempt spent; returns it (``raise e.spent(...)``)."""
        self.tokens_in, self.tokens_out, self.cost_usd, self.model = tokens_in, tokens_out, cost_usd, model
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses Ray with its spend (the default would keep only the message).
        return (_rebuild_proposal_failed, (type(self), self.args, self.__dict__))


class EditRejected(ProposalFailed):
    """An edit is malformed (markers), unsafe (another file, forbidden constructs), does not
    apply (SEARCH text absent or ambiguous), changes nothing, or makes the file too large.

    The message is written for the model: it is fed back verbatim for a corrected edit.
    """


class BudgetExhausted(ProposalFailed):
    """A budget is spent; ``limit`` names which one (``tokens``, ``usd`` or ``seconds``).

    Raised before a call is made, so no spend happens past the check.
    """

    def __init__(self, limit: str, detail: str) -> None:
        self.limit = limit
        super().__init__(f"{limit} budget exhausted: {detail}")


def _rebuild_proposal_failed(cls: type[ProposalFailed], args: tuple[Any, ...], state: dict[str, Any]) -> ProposalFailed:
    e = cls.__new__(cls)
    Exception.__init__(e, *args)
    e.__dict__.update(state)
    return e

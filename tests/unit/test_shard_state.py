"""The shard's logic without Ray or wasm: a Python kernel on the oracle's view stands
in for the module, so every schedule of batches, swaps, traps and crashes can be
checked against the oracle on the same schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import ModuleRejected, NotServed, PayloadError
from actors.output import output_hash
from actors.shard.lane import MessageTrapped, Promoted, RolledBack, Swapped, SwapRejected
from actors.shard.state import ShardState
from actors.signing import Signer
from actors.sink import MemorySink
from tests.support.pykernel import POISON
from tests.support.shardkit import SMALL, FakeRegistry, MemJournal, batches_of, expected, module, new_state, traffic

PAYLOADS = traffic(160)
LATENESS = 0


def started(**kw: object) -> tuple[ShardState, MemorySink]:
    sink = MemorySink()
    state = new_state(sink=sink, **kw)  # type: ignore[arg-type]
    state.add_tenant(SMALL, *module(SMALL, b"py:generic", 1))
    return state, sink


def swap(state: ShardState, wasm: bytes, version: int) -> list[object]:
    pending = state.begin_swap(*module(SMALL, wasm, version))
    assert pending is not None
    lane = state.lane(SMALL.org)
    try:
        prepared = lane.prepare(pending)
    except ModuleRejected as e:
        return list(state.finish_swap(SMALL.org, pending, e))
    return list(state.finish_swap(SMALL.org, pending, prepared))


def feed(state: ShardState, batches: list[list[bytes]], source: str = "src", first_seq: int = 0) -> None:
    for i, b in enumerate(batches):
        state.ingest(SMALL.org, source, first_seq + i, b)


def test_rows_and_counts_equal_the_oracle_on_the_same_schedule() -> None:
    state, sink = started()
    batches = batches_of(PAYLOADS, 5)
    feed(state, batches)
    state.drain(SMALL.org)
    want = expected(SMALL, batches, LATENESS)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(want.rows)
    acct = state.lane(SMALL.org).account
    assert acct.messages_received == len(PAYLOADS) == acct.accounted()
    assert (acct.points, acct.nonfinite_points, acct.late_points) == (want.points, want.nonfinite, want.late)
    assert want.late > 0  # the schedule does produce late points, and they are counted


def test_retained_batches_are_bounded_by_the_watermark() -> None:
    state, _ = started()
    feed(state, batches_of(PAYLOADS, 8))
    lane = state.lane(SMALL.org)
    assert 0 < len(lane.retained) < len(PAYLOADS) // 8
    iv = SMALL.interval_s
    assert all(r.max_ts // iv * iv + iv > (lane.flushed_to or 0) for r in lane.retained)


def test_a_swap_while_batches_keep_arriving_changes_nothing_downstream() -> None:
    state, sink = started()
    batches = batches_of(PAYLOADS, 8)
    feed(state, batches[:5])
    pending = state.begin_swap(*module(SMALL, b"py:v2", 2))
    assert pending is not None
    lane = state.lane(SMALL.org)
    prepared = lane.prepare(pending)
    feed(state, batches[5:7], first_seq=5)  # arrive after prepare: caught up without the lock...
    assert lane.catch_up(prepared) == 0 and pending.applied > 0
    feed(state, batches[7:9], first_seq=7)  # ... and these under it, at commit
    events = state.finish_swap(SMALL.org, pending, prepared)
    assert any(isinstance(e, Swapped) for e in events)
    assert lane.served.entry.version == 2 and lane.previous is not None
    feed(state, batches[9:], first_seq=9)
    assert lane.previous is None  # probation passed
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)
    assert lane.account.swaps == 1 and lane.account.module_version == 2


@given(st.lists(st.integers(0, 19), min_size=1, max_size=20))
def test_any_number_of_swaps_at_any_batches_equals_the_oracle(at: list[int]) -> None:
    state, sink = started()
    batches = batches_of(PAYLOADS, 8)
    version = 1
    for i, b in enumerate(batches):
        for _ in range(at.count(i)):
            if state.lane(SMALL.org).previous is None:
                version += 1
                swap(state, f"py:v{version}".encode(), version)
        state.ingest(SMALL.org, "src", i, b)
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)
    assert state.lane(SMALL.org).served.entry.version == version


def test_checks_in_order_tampered_untrusted_stale() -> None:
    state, _ = started()
    signed, wasm = module(SMALL, b"py:v2", 2)
    with pytest.raises(ModuleRejected) as e:
        state.begin_swap(signed, wasm + b"x")
    assert e.value.reason == "sha256_mismatch"
    with pytest.raises(ModuleRejected) as e:
        state.begin_swap(*module(SMALL, b"py:v2", 2, signer=Signer.generate()))
    assert e.value.reason == "untrusted_key"
    with pytest.raises(ModuleRejected) as e:
        state.begin_swap(*module(SMALL, b"py:v1-again", 1))
    assert e.value.reason == "stale_version"
    assert state.lane(SMALL.org).account.swap_rejections == {"sha256_mismatch": 1, "untrusted_key": 1, "stale_version": 1}
    assert state.lane(SMALL.org).served.entry.version == 1


def test_an_invalid_module_with_a_valid_signature_is_rejected_and_reported() -> None:
    registry = FakeRegistry()
    state, _ = started(registry=registry)
    events = swap(state, b"py-invalid:x", 2)
    assert [type(e) for e in events] == [SwapRejected] and events[0].reason == "invalid"  # type: ignore[attr-defined]
    assert [b[2] for b in registry.bad] == [2]
    with pytest.raises(ModuleRejected) as e:
        state.begin_swap(*module(SMALL, b"py-invalid:x", 2))
    assert e.value.reason == "marked_bad"


def test_a_wrong_module_fails_the_shadow_check_on_held_back_messages() -> None:
    state, _ = started()
    feed(state, batches_of(PAYLOADS[:80], 8))
    assert state.holdout(SMALL.org)
    events = swap(state, b"py-wrong:x", 2)
    assert [type(e) for e in events] == [SwapRejected] and events[0].reason == "shadow_mismatch"  # type: ignore[attr-defined]


def test_a_wrong_module_without_held_back_messages_is_caught_live_and_rolled_back() -> None:
    registry = FakeRegistry()
    state, sink = started(registry=registry)
    batches = batches_of(PAYLOADS, 8)
    events = swap(state, b"py-wrong:x", 2)  # nothing held back yet: no shadow check possible
    assert any(isinstance(e, Swapped) for e in events)
    feed(state, batches)
    lane = state.lane(SMALL.org)
    assert lane.served.entry.version == 1 and lane.account.rollbacks == 1
    assert [b[2] for b in registry.bad] == [2]
    state.drain(SMALL.org)
    # Nothing the wrong module computed reached the sink.
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)


def test_a_module_that_traps_on_its_first_batch_is_rolled_back_and_nothing_is_lost() -> None:
    registry = FakeRegistry()
    state, sink = started(registry=registry)
    batches = batches_of(PAYLOADS, 8)
    assert any(isinstance(e, Swapped) for e in swap(state, b"py-trap:x", 2))
    ack = state.ingest(SMALL.org, "src", 0, batches[0])
    assert "RolledBack" in ack.events and ack.accepted == len(batches[0])
    feed(state, batches[1:], first_seq=1)
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)
    assert registry.bad and registry.bad[0][2] == 2


def test_a_message_that_traps_the_kernel_is_rejected_alone() -> None:
    state, sink = started()
    batches = batches_of(PAYLOADS, 8)
    poisoned = [*batches[3][:4], POISON, *batches[3][4:]]
    feed(state, batches[:3])
    ack = state.ingest(SMALL.org, "src", 3, poisoned)
    assert ack.rejected == {"kernel_trap": 1} and ack.accepted == len(batches[3])
    feed(state, batches[4:], first_seq=4)
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)
    assert any(e["event"] == MessageTrapped.__name__ for e in state.history)


def test_a_repeated_batch_is_acknowledged_but_not_counted() -> None:
    state, _ = started()
    batches = batches_of(PAYLOADS, 8)
    first = state.ingest(SMALL.org, "src", 0, batches[0])
    again = state.ingest(SMALL.org, "src", 0, batches[0])
    assert not first.duplicate and again.duplicate
    assert state.lane(SMALL.org).account.messages_received == len(batches[0])


def test_bad_calls_get_clear_errors() -> None:
    state, _ = started()
    with pytest.raises(NotServed):
        state.ingest(999, "src", 0, [])
    with pytest.raises(PayloadError) as e:
        state.ingest(SMALL.org, "src", 0, [b"x"] * (state.settings.max_batch_messages + 1))
    assert e.value.reason == "batch_too_large"
    with pytest.raises(ModuleRejected) as e2:
        state.add_tenant(SMALL, *module(SMALL, b"py:again", 1))
    assert e2.value.reason == "already_served"


@given(st.integers(1, 19), st.sampled_from([0, 3, 7]))
def test_recovery_from_checkpoint_and_journal_loses_nothing_and_counts_nothing_twice(crash_at: int, checkpoint_every: int) -> None:
    from actors.shard.settings import ShardSettings

    settings = ShardSettings(allowed_lateness_s=LATENESS, probation_batches=2, checkpoint_every_batches=checkpoint_every, checkpoint_every_s=1e9)
    journal, sink = MemJournal(), MemorySink()  # both durable: they outlive the crash
    state = new_state(settings, journal, sink)
    state.add_tenant(SMALL, *module(SMALL, b"py:generic", 1))
    batches = batches_of(PAYLOADS, 8)
    for i, b in enumerate(batches[:crash_at]):
        if i == 2:
            swap(state, b"py:v2", 2)
        state.ingest(SMALL.org, "src", i, b)
    # Crash. A new state recovers from what was journaled; the client resends the last batch.
    state = new_state(settings, journal, sink)
    state.restore(*journal.load())
    assert state.last_seq(SMALL.org, "src") == crash_at - 1  # where a restarted client resumes
    resent = state.ingest(SMALL.org, "src", crash_at - 1, batches[crash_at - 1])
    assert resent.duplicate
    for i in range(crash_at, len(batches)):
        state.ingest(SMALL.org, "src", i, batches[i])
    state.drain(SMALL.org)
    want = expected(SMALL, batches, LATENESS)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(want.rows)
    acct = state.lane(SMALL.org).account
    assert acct.messages_received == len(PAYLOADS) == acct.accounted()
    assert acct.late_points == want.late


def test_an_org_moves_between_shards_with_its_state() -> None:
    a, sink = started()
    b = new_state(sink=sink, name="shard-b")
    batches = batches_of(PAYLOADS, 8)
    feed(a, batches[:7])
    b.import_org(a.export_org(SMALL.org))
    with pytest.raises(NotServed):
        a.ingest(SMALL.org, "src", 7, batches[7])
    assert b.ingest(SMALL.org, "src", 6, batches[6]).duplicate  # what it acknowledged moved too
    assert b.last_seq(SMALL.org, "src") == 6 and b.last_seq(SMALL.org, "other") == -1
    with pytest.raises(NotServed):
        a.last_seq(SMALL.org, "src")
    feed(b, batches[7:], first_seq=7)
    b.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)


def test_revoking_the_serving_version_falls_back_to_the_one_before() -> None:
    state, sink = started()
    batches = batches_of(PAYLOADS, 8)
    swap(state, b"py:v2", 2)
    feed(state, batches[:6])
    lane = state.lane(SMALL.org)
    assert lane.previous is None and lane.served.entry.version == 2
    events = state.revoke(SMALL.org, 2, "operator")
    assert any(isinstance(e, RolledBack) for e in events) and any(isinstance(e, Promoted) for e in events)
    assert lane.served.entry.version == 1
    feed(state, batches[6:], first_seq=6)
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)


def test_a_newer_offer_during_a_swap_is_queued_and_the_newest_wins() -> None:
    state, _ = started()
    pending = state.begin_swap(*module(SMALL, b"py:v2", 2))
    assert pending is not None
    assert state.begin_swap(*module(SMALL, b"py:v3", 3)) is None
    assert state.begin_swap(*module(SMALL, b"py:v4", 4)) is None
    lane = state.lane(SMALL.org)
    state.finish_swap(SMALL.org, pending, lane.prepare(pending))
    assert lane.take_queued() is None  # on probation: wait
    feed(state, batches_of(PAYLOADS, 8))
    queued = lane.take_queued()
    assert queued is not None and queued[0].manifest.version == 4


def test_a_revoke_after_recovery_does_what_it_did_live() -> None:
    journal, sink = MemJournal(), MemorySink()
    state = new_state(journal=journal, sink=sink)
    state.add_tenant(SMALL, *module(SMALL, b"py:generic", 1))
    batches = batches_of(PAYLOADS, 8)
    swap(state, b"py:v2", 2)
    feed(state, batches[:6])  # v2 passes probation; v1 is its fallback
    state = new_state(journal=journal, sink=sink)
    state.restore(*journal.load())
    assert state.lane(SMALL.org).fallback is not None
    state.revoke(SMALL.org, 2, "operator")
    assert state.lane(SMALL.org).served.entry.version == 1


def test_a_batch_run_a_message_at_a_time_is_never_replayed_whole() -> None:
    sink = MemorySink()
    state = new_state(sink=sink)
    state.add_tenant(SMALL, *module(SMALL, b"py-small:x", 1))  # traps on calls of more than 4 messages
    batches = batches_of(PAYLOADS, 8)
    feed(state, batches)  # every batch is isolated; rebuilds must not trap on them
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)
    assert state.lane(SMALL.org).account.rejected == {}


def test_revoking_the_module_compared_against_ends_the_probation() -> None:
    state, sink = started()
    batches = batches_of(PAYLOADS, 8)
    swap(state, b"py:v2", 2)
    lane = state.lane(SMALL.org)
    assert lane.previous is not None
    events = state.revoke(SMALL.org, 1, "operator")
    assert any(isinstance(e, Promoted) for e in events) and lane.previous is None and lane.served.entry.version == 2
    feed(state, batches)
    state.drain(SMALL.org)
    assert output_hash(sink.rows(SMALL.org)) == output_hash(expected(SMALL, batches, LATENESS).rows)


def test_a_message_that_trapped_live_is_not_run_again_on_replay() -> None:
    journal, sink = MemJournal(), MemorySink()
    state = new_state(journal=journal, sink=sink)
    state.add_tenant(SMALL, *module(SMALL, b"py:generic", 1))
    batches = batches_of(PAYLOADS, 8)
    poisoned = [*batches[0][:2], POISON, *batches[0][2:]]
    assert state.ingest(SMALL.org, "src", 0, poisoned).rejected == {"kernel_trap": 1}
    _, records = journal.load()
    assert records[-1][0] == "batch" and records[-1][5] == (2,)
    # Replayed, the journal decides: the message is rejected again without being run,
    # even by a module it would not trap (a deadline trap depends on the machine's load).
    records[-1] = (*records[-1][:4], tuple(b"" if p == POISON else p for p in poisoned), (2,))
    again = new_state(journal=MemJournal(), sink=MemorySink())
    again.restore(None, records)
    assert again.lane(SMALL.org).account.rejected == {"kernel_trap": 1}
    assert again.lane(SMALL.org).account.messages_accepted == len(batches[0])


def test_an_org_arriving_with_an_unsigned_or_foreign_module_is_refused() -> None:
    from dataclasses import replace

    a, _ = started()
    export = a.export_org(SMALL.org)
    b = new_state(name="shard-b")
    unsigned = replace(export, lane=replace(export.lane, entry=replace(export.lane.entry, signed=None)))
    with pytest.raises(ModuleRejected) as e:
        b.import_org(unsigned)
    assert e.value.reason == "unsigned"
    other_signer = replace(
        export, lane=replace(export.lane, entry=replace(export.lane.entry, signed=module(SMALL, b"py:generic", 1, signer=Signer.generate())[0]))
    )
    with pytest.raises(ModuleRejected) as e:
        b.import_org(other_signer)
    assert e.value.reason == "untrusted_key"
    assert SMALL.org not in b.lanes
    b.import_org(export)
    assert SMALL.org in b.lanes


def test_capacity_counts_the_modules_cpu_time_not_the_machines_load() -> None:
    from actors.shard.lane import Lane
    from actors.shard.settings import ShardSettings
    from tests.support.pykernel import make_pykernel
    from tests.support.shardkit import TRUST

    cpu = [0.0]
    wall = [100.0]

    class Slow:
        """A module whose every call costs 2 ms of this thread's CPU (and, the machine being
        busy, 20 ms of wall time)."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def process(self, payloads: list[bytes], batch: str = "") -> object:
            cpu[0] += 0.002
            wall[0] += 0.02
            return self.inner.process(payloads, batch)  # type: ignore[attr-defined]

        def flush(self, wm: int = 2**63 - 1, batch: str = "") -> object:
            cpu[0] += 0.002
            return self.inner.flush(wm, batch)  # type: ignore[attr-defined]

    settings = ShardSettings(allowed_lateness_s=0, rate_window_s=1e6)
    entry = module(SMALL, b"py:generic", 1)
    from actors.shard.lane import ModuleEntry

    lane = Lane(
        SMALL,
        ModuleEntry.of(*entry),
        settings,
        lambda w, c: Slow(make_pykernel(w, c)),  # type: ignore[arg-type, return-value]
        TRUST,
        lambda: wall[0],
        cpu_clock=lambda: cpu[0],
    )
    batches = batches_of(PAYLOADS[:40], 8)
    for b in batches:
        lane.ingest(b)
    st = lane.status()
    # 40 messages over (5 process calls + the flush calls) x 2 ms of CPU, whatever the wall clock did.
    calls = round(cpu[0] / 0.002)
    assert calls > 5 and lane.capacity() == pytest.approx(40 / (0.002 * calls), rel=1e-9)
    assert lane.capacity_wall() == pytest.approx(40 / (0.02 * 5), rel=1e-9)
    assert st["capacity_wall_msg_per_s"] is not None and st["mean_batch_messages"] == 8.0
    assert st["points_in"] == lane.account.points and "points_late" in st and "points_nonfinite" in st


def test_the_pace_of_event_time_is_measured_per_message() -> None:
    state, _ = started()
    feed(state, batches_of(PAYLOADS[:64], 8))
    lane = state.lane(SMALL.org)
    pace = lane.pace()
    assert pace is not None and pace > 0
    # SMALL's traffic: now moves step_s (10 s) every messages_per_window (8) messages.
    assert pace == pytest.approx(10 / 8, rel=0.3)

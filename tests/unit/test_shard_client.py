"""The client traffic goes through, against shards made of a real ShardState (no Ray):
numbering that survives a client restart, order under concurrent senders, retries that
never count twice, and numbers that are never reused."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from ray.exceptions import GetTimeoutError

from actors.errors import ConfigError
from actors.shard.client import RENUMBER_ATTEMPTS, ShardClient
from actors.shard.state import ShardState
from tests.support.shardkit import SMALL, batches_of, module, new_state, traffic

BATCHES = batches_of(traffic(160, seed=21), 8)


class Method:
    """``shard.method.remote(...)`` returns a thunk; ``get`` runs it (a call made, then awaited)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Callable[[], Any]:
        return lambda: self.fn(*args)


def get(thunk: Callable[[], Any], timeout: float | None = None) -> Any:
    return thunk()


class FakeShard:
    """A shard actor's calls on a ShardState, one at a time (the actor's lock); ``jitter_s``
    delays each ingest before it takes the lock, as a network would, so concurrent calls
    can arrive out of order."""

    def __init__(self, state: ShardState, jitter_s: float = 0.0, seed: int = 0, before: Callable[..., None] | None = None) -> None:
        self.state, self.jitter_s, self.rng, self.lock = state, jitter_s, random.Random(seed), threading.Lock()
        self.before = before  # runs just before an ingest, with its arguments: another caller's call landing first
        self.ingest = Method(self._ingest)
        self.last_seq = Method(self._last_seq)

    def _ingest(self, *args: Any) -> Any:
        if self.jitter_s:
            time.sleep(self.rng.random() * self.jitter_s)
        with self.lock:
            if self.before is not None:
                self.before(*args)
            return self.state.ingest(*args)

    def _last_seq(self, *args: Any) -> int:
        with self.lock:
            return self.state.last_seq(*args)


def served() -> ShardState:
    state = new_state()
    state.add_tenant(SMALL, *module(SMALL, b"py:generic", 1))
    return state


def received(state: ShardState) -> int:
    return state.lane(SMALL.org).account.messages_received


def test_a_client_restarted_under_the_same_name_continues_its_numbering() -> None:
    state = served()
    shard = FakeShard(state)
    first = ShardClient("producer", lambda org: shard, get=get)
    acks = [first.send(SMALL.org, b) for b in BATCHES[:4]]
    again = ShardClient("producer", lambda org: shard, get=get)  # the process restarted
    acks += [again.send(SMALL.org, b) for b in BATCHES[4:8]]
    assert [a.seq for a in acks] == list(range(8))
    assert not any(a.duplicate for a in acks)
    assert received(state) == sum(len(b) for b in BATCHES[:8])


def test_concurrent_senders_through_one_client_lose_nothing() -> None:
    state = served()
    shard = FakeShard(state, jitter_s=0.003, seed=4)
    client = ShardClient("shared", lambda org: shard, get=get)
    acks: list[Any] = []
    mine = [BATCHES[i::4] for i in range(4)]

    def run(batches: list[list[bytes]]) -> None:
        for b in batches:
            acks.append(client.send(SMALL.org, b))

    threads = [threading.Thread(target=run, args=(m,)) for m in mine]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acks) == len(BATCHES) and not any(a.duplicate for a in acks)
    assert sorted(a.seq for a in acks) == list(range(len(BATCHES)))
    assert received(state) == sum(len(b) for b in BATCHES)


def test_a_batch_whose_acknowledgement_was_lost_is_sent_again_and_counted_once() -> None:
    state = served()
    shard = FakeShard(state)
    lost = {"n": 1}

    def flaky_get(thunk: Callable[[], Any], timeout: float | None = None) -> Any:
        result = thunk()  # the shard ran and journaled it ...
        if lost["n"] and getattr(result, "messages", None):
            lost["n"] -= 1
            raise GetTimeoutError("the acknowledgement was lost")  # ... but the answer never came
        return result

    client = ShardClient("p", lambda org: shard, get=flaky_get)
    ack = client.send(SMALL.org, BATCHES[0])
    assert ack.duplicate and client.retries == 1
    assert not client.send(SMALL.org, BATCHES[1]).duplicate
    assert received(state) == len(BATCHES[0]) + len(BATCHES[1])


def test_a_failed_batchs_number_is_never_reused() -> None:
    state = served()
    shard = FakeShard(state)
    down = {"yes": True}

    def get_while_down(thunk: Callable[[], Any], timeout: float | None = None) -> Any:
        result = thunk()
        if down["yes"] and getattr(result, "messages", None):
            raise GetTimeoutError("no answer")  # landed on the shard; the sender gives up
        return result

    client = ShardClient("p", lambda org: shard, retry_for_s=0.0, get=get_while_down)
    with pytest.raises(GetTimeoutError):
        client.send(SMALL.org, BATCHES[0])
    down["yes"] = False
    ack = client.send(SMALL.org, BATCHES[1])  # a different batch: a new number, counted
    assert ack.seq == 1 and not ack.duplicate
    assert received(state) == len(BATCHES[0]) + len(BATCHES[1])


def test_a_number_taken_by_the_previous_process_is_sent_again_under_a_fresh_one() -> None:
    state = served()
    old = ShardClient("p", lambda org: FakeShard(state), get=get)
    for b in BATCHES[:2]:
        old.send(SMALL.org, b)  # numbers 0 and 1
    late = {"pending": True}

    def old_call_lands(org: int, source: str, seq: int, payloads: list[bytes]) -> None:
        # The old process's last call (number 2, never acknowledged to it) lands after the
        # new process asked where to resume (1) and before its first batch (also 2).
        if late["pending"]:
            late["pending"] = False
            state.ingest(org, source, 2, BATCHES[2])

    new = ShardClient("p", lambda org: FakeShard(state, before=old_call_lands), get=get)
    ack = new.send(SMALL.org, BATCHES[3])
    assert not ack.duplicate and ack.seq == 3 and new.renumbered == 1
    assert received(state) == sum(len(b) for b in BATCHES[:4])


def test_two_live_clients_under_one_name_get_a_clear_error() -> None:
    state = served()

    def twin_sends_first(org: int, source: str, seq: int, payloads: list[bytes]) -> None:
        state.ingest(org, source, seq, BATCHES[0])

    client = ShardClient("p", lambda org: FakeShard(state, before=twin_sends_first), get=get)
    with pytest.raises(ConfigError, match="another live client"):
        client.send(SMALL.org, BATCHES[1])
    assert client.renumbered == RENUMBER_ATTEMPTS


def test_a_shard_from_older_code_is_numbered_from_zero() -> None:
    state = served()
    shard = FakeShard(state)
    del shard.last_seq  # started before last_seq existed (a system upgraded in place)
    client = ShardClient("p", lambda org: shard, get=get)
    acks = [client.send(SMALL.org, b) for b in BATCHES[:2]]
    assert [a.seq for a in acks] == [0, 1] and not any(a.duplicate for a in acks)

"""The shard's checkpoint and journal on real files: round trips, torn frames, epochs, crashes."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from actors.errors import StateError
from actors.shard.store import ShardStore

RECORDS: list[tuple[Any, ...]] = [("ingest", 1042, i, b"\x00\xff" * i, {"n": i}) for i in range(20)]


def journals(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("journal-*.log"))


def fresh(root: Path, fsync: bool = False) -> tuple[ShardStore, Any, list[tuple[Any, ...]]]:
    s = ShardStore(root, fsync=fsync)
    snapshot, records = s.load()
    return s, snapshot, records


def frame(record: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(record)
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


def test_an_empty_directory_loads_as_nothing(tmp_path: Path) -> None:
    s, snapshot, records = fresh(tmp_path / "shard")
    assert (snapshot, records) == (None, [])
    assert (tmp_path / "shard").is_dir()
    assert s.epoch == 0


def test_appended_records_load_back_in_order(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    for r in RECORDS:
        s.append(r)
    s.close()
    assert s.bytes_written == (tmp_path / "journal-00000000.log").stat().st_size
    _, snapshot, records = fresh(tmp_path)
    assert snapshot is None
    assert records == RECORDS


def test_appends_after_a_reload_continue_the_same_journal(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.close()
    s, _, records = fresh(tmp_path)
    assert records == RECORDS[:1]
    s.append(RECORDS[1])
    s.close()
    assert fresh(tmp_path)[2] == RECORDS[:2]


@pytest.mark.parametrize("cut", [1, 4, 8, 9, -1])
def test_a_frame_cut_short_is_dropped_and_the_file_truncated(tmp_path: Path, cut: int) -> None:
    """``cut``: bytes of the last frame left on disk (inside the header, at its end, in the body)."""
    s, _, _ = fresh(tmp_path)
    for r in RECORDS[:3]:
        s.append(r)
    s.close()
    path = tmp_path / "journal-00000000.log"
    good = path.stat().st_size
    last = frame(RECORDS[3])
    with open(path, "ab") as f:
        f.write(last[:cut])
    s, _, records = fresh(tmp_path)
    assert records == RECORDS[:3]
    assert path.stat().st_size == good
    s.append(RECORDS[4])
    s.close()
    assert fresh(tmp_path)[2] == [*RECORDS[:3], RECORDS[4]]


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\xde\xad\xbe\xef" * 5, id="garbage"),
        pytest.param(struct.pack("<II", 10**9, 0) + b"abc", id="length-past-the-end"),
        pytest.param(frame(("bad crc",))[:-1] + b"\x00", id="bad-crc"),
        pytest.param(struct.pack("<II", 4, 12345) + b"abcd", id="bad-crc-short"),
    ],
)
def test_a_bad_trailing_frame_is_dropped_and_later_appends_load(tmp_path: Path, tail: bytes) -> None:
    s, _, _ = fresh(tmp_path)
    for r in RECORDS[:2]:
        s.append(r)
    s.close()
    path = tmp_path / "journal-00000000.log"
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(tail)
    s, _, records = fresh(tmp_path)
    assert records == RECORDS[:2]
    assert path.read_bytes() == good
    s.append(RECORDS[2])
    s.close()
    assert fresh(tmp_path)[2] == RECORDS[:3]


def test_a_zero_filled_tail_is_dropped(tmp_path: Path) -> None:
    """A power loss can leave a file's new length on disk without its data: a zero-filled tail."""
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.close()
    with open(tmp_path / "journal-00000000.log", "ab") as f:
        f.write(b"\x00" * 16)
    assert fresh(tmp_path)[2] == RECORDS[:1]


def test_a_checkpoint_starts_a_new_epoch_and_deletes_the_old_journal(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.append(RECORDS[1])
    assert journals(tmp_path) == ["journal-00000000.log"]
    s.checkpoint({"state": "after two"})
    assert s.epoch == 1
    assert journals(tmp_path) == []
    assert not (tmp_path / "checkpoint.tmp").exists()
    s.append(RECORDS[2])
    assert journals(tmp_path) == ["journal-00000001.log"]
    s.close()
    s, snapshot, records = fresh(tmp_path)
    assert s.epoch == 1
    assert snapshot == {"state": "after two"}
    assert records == [RECORDS[2]]


def test_successive_checkpoints_keep_only_the_last(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    for i in range(3):
        s.append(RECORDS[i])
        s.checkpoint(i)
    s.append(RECORDS[3])
    s.close()
    assert journals(tmp_path) == ["journal-00000003.log"]
    s, snapshot, records = fresh(tmp_path)
    assert (s.epoch, snapshot, records) == (3, 2, [RECORDS[3]])


def test_a_checkpoint_without_later_records_loads_with_no_records(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.checkpoint(["snap"])
    s.close()
    assert fresh(tmp_path)[1:] == (["snap"], [])


def test_a_crash_between_rename_and_delete_replays_only_the_new_epoch(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.append(RECORDS[1])
    s.close()
    old_journal = (tmp_path / "journal-00000000.log").read_bytes()
    s, _, _ = fresh(tmp_path)
    s.checkpoint("includes 0 and 1")
    s.append(RECORDS[2])
    s.close()
    # The crash: the checkpoint was renamed into place but the old journal was never deleted.
    (tmp_path / "journal-00000000.log").write_bytes(old_journal)
    s, snapshot, records = fresh(tmp_path)
    assert snapshot == "includes 0 and 1"
    assert records == [RECORDS[2]]  # not RECORDS[0], RECORDS[1] a second time
    assert journals(tmp_path) == ["journal-00000001.log"]  # the stale journal is gone
    s.append(RECORDS[3])
    s.close()
    assert fresh(tmp_path)[2] == RECORDS[2:4]


def test_a_crash_before_the_rename_keeps_the_old_checkpoint_and_journal(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.close()
    # The crash: a temporary checkpoint was (partly) written, never renamed.
    (tmp_path / "checkpoint.tmp").write_bytes(pickle.dumps((1, "never renamed"))[:5])
    s, snapshot, records = fresh(tmp_path)
    assert (s.epoch, snapshot, records) == (0, None, RECORDS[:1])


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not a pickle at all", id="garbage"),
        pytest.param(pickle.dumps((1, {"a": list(range(100))}))[:-7], id="truncated"),
        pytest.param(pickle.dumps((1,)), id="wrong-shape"),
    ],
)
def test_an_unreadable_checkpoint_raises_state_error(tmp_path: Path, content: bytes) -> None:
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.checkpoint("good")
    s.close()
    (tmp_path / "checkpoint.pkl").write_bytes(content)
    with pytest.raises(StateError, match="unreadable checkpoint"):
        ShardStore(tmp_path).load()


def test_fsync_syncs_every_append_and_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    s, _, _ = fresh(tmp_path, fsync=True)
    s.append(RECORDS[0])
    s.append(RECORDS[1])
    assert len(synced) == 2
    s.checkpoint("snap")
    assert len(synced) == 4  # the checkpoint file, then its directory (the rename)
    s.append(RECORDS[2])
    s.close()
    assert len(synced) == 5
    _, snapshot, records = fresh(tmp_path, fsync=True)
    assert (snapshot, records) == ("snap", [RECORDS[2]])


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    s, _, _ = fresh(tmp_path)
    s.append(RECORDS[0])
    s.checkpoint("snap")
    s.close()
    assert synced == []


def test_damage_before_the_last_frame_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    s, _, _ = fresh(tmp_path)
    for r in RECORDS[:3]:
        s.append(r)
    s.close()
    path = tmp_path / "journal-00000000.log"
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the first record's body
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="damaged record at byte 0"):
        fresh(tmp_path)

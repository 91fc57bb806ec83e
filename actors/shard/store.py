"""Where a shard keeps what it acknowledged: a checkpoint and a journal, per shard, on disk.

``checkpoint.pkl`` holds a :class:`~actors.shard.state.ShardSnapshot` and the number
``e`` of the journal that follows it; ``journal-<e>.log`` holds the records
acknowledged since, each framed as ``u32 length | u32 crc32 | pickle``. A checkpoint
is written to a temporary file and renamed over the old one (atomic), and only then
is a new journal started and the old one deleted: a crash at any point leaves a
checkpoint and exactly the journal that continues it. A frame cut short by a crash
was never acknowledged; it is dropped (and the file truncated there) on load.

The files are the shard's own, written by this code; they are trusted (pickle). On a
cluster the directory must be on storage every node that may host the shard can read.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from actors.errors import StateError

_FRAME = struct.Struct("<II")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardStore:
    def __init__(self, root: Path, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        self.epoch = 0
        self._file: BinaryIO | None = None
        self.bytes_written = 0

    @property
    def _checkpoint_path(self) -> Path:
        return self.root / "checkpoint.pkl"

    def _journal_path(self, epoch: int) -> Path:
        return self.root / f"journal-{epoch:08d}.log"

    def load(self) -> tuple[Any | None, list[tuple[Any, ...]]]:
        """The last checkpoint (or None) and the records journaled after it."""
        snapshot = None
        if self._checkpoint_path.exists():
            try:
                with open(self._checkpoint_path, "rb") as f:
                    epoch, snapshot = pickle.load(f)
                if not isinstance(epoch, int) or epoch < 0:
                    raise ValueError(f"journal number {epoch!r}")
                self.epoch = epoch
            except Exception as e:  # whatever it holds, recovery must not guess
                raise StateError(f"{self._checkpoint_path}: unreadable checkpoint: {e!r}") from None
        for old in self.root.glob("journal-*.log"):
            if old != self._journal_path(self.epoch):
                old.unlink()  # superseded by the checkpoint
        records: list[tuple[Any, ...]] = []
        path = self._journal_path(self.epoch)
        if path.exists():
            data = path.read_bytes()
            pos = 0
            while pos + _FRAME.size <= len(data):
                n, crc = _FRAME.unpack_from(data, pos)
                end = pos + _FRAME.size + n
                body = data[pos + _FRAME.size : end]
                if n == 0 or len(body) < n or zlib.crc32(body) != crc:
                    if n and end < len(data):
                        # A crash tears only the last frame: damage followed by more
                        # frames is corruption of acknowledged records.
                        raise StateError(f"{path}: damaged record at byte {pos} followed by {len(data) - end} more bytes")
                    break
                try:
                    records.append(pickle.loads(body))
                except Exception as e:
                    raise StateError(f"{path}: record at byte {pos} does not load: {e!r}") from None
                pos = end
            if pos < len(data):
                with open(path, "r+b") as f:
                    f.truncate(pos)  # a torn frame: never acknowledged
        return snapshot, records

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self._journal_path(self.epoch), "ab")  # noqa: SIM115 - kept open for appends
        return self._file

    def append(self, record: tuple[Any, ...]) -> None:
        body = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        f = self._open()
        f.write(_FRAME.pack(len(body), zlib.crc32(body)) + body)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        self.bytes_written += _FRAME.size + len(body)

    def checkpoint(self, snapshot: Any) -> None:
        tmp = self._checkpoint_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump((self.epoch + 1, snapshot), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self._checkpoint_path)
        if self.fsync:
            _fsync_dir(self.root)  # the rename is durable before the old journal goes
        if self._file is not None:
            self._file.close()
            self._file = None
        old = self._journal_path(self.epoch)
        self.epoch += 1
        old.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

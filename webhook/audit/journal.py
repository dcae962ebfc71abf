"""The audit journal: folded rows the database could not take yet, in local files, bounded. IO only.

Rules of this module:
- One directory per writer process (`slot-<n>` under AUDIT_JOURNAL_DIR, held with an exclusive
  `flock` for the life of the process), so workers never share files and a restarted process finds
  what its predecessor left (`Journal.open` takes the first free slot, then adopts the segments of
  any other slot no live process holds).
- Rows are appended as JSON lines to numbered segment files (`<seq>.jsonl`, mode 0600), one
  `write` + `fsync` per batch; a segment is sealed past `segment_bytes`. Replay reads the oldest
  segment first and removes it once every row of it is in the database.
- At most `max_bytes` in all: rows that would pass it are refused (the caller counts their
  records as dropped). A torn last line (a crash mid-write) is skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

SEGMENT_BYTES: Final = 1 << 20
MAX_SLOTS: Final = 256
_TIME_COLUMNS: Final = ("first_seen", "last_seen")


@dataclass(slots=True)
class Segment:
    """One journal file: its sequence number, size and the records (occurrences) it holds."""

    seq: int
    path: Path
    size: int
    records: int
    done: int = 0  # lines already written to the database (replay resumes after them)


def decode_line(line: bytes) -> dict[str, Any]:
    """One row back from its line; raises ValueError on a damaged line."""
    row = orjson.loads(line)
    if not isinstance(row, dict) or not all(isinstance(row.get(c), str) for c in _TIME_COLUMNS):
        raise ValueError("not a journal row")
    for column in _TIME_COLUMNS:
        row[column] = dt.datetime.fromisoformat(row[column])
    if type(row.get("occurrences")) is not int:
        raise ValueError("not a journal row")
    return row


class Journal:
    """The segments of one slot; see the module rules."""

    def __init__(self, slot: Path, lock: IO[bytes], *, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.slot = slot
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = lock
        self._segments: list[Segment] = []
        self._open: Segment | None = None  # the segment appends go to
        self.corrupt_lines = 0

    @classmethod
    def open(cls, directory: Path, *, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> Journal:
        """The first free slot of `directory` (created 0700), with every unheld slot's segments adopted."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for n in range(MAX_SLOTS):
            slot = directory / f"slot-{n}"
            lock = _try_lock(slot)
            if lock is not None:
                break
        else:
            raise OSError(f"every journal slot of {directory} is held by a live process")
        journal = cls(slot, lock, max_bytes=max_bytes, segment_bytes=segment_bytes)
        journal._adopt(directory)
        journal._scan()
        return journal

    def _adopt(self, directory: Path) -> None:
        """Move the segments of slots no process holds into ours (they are replayed like our own)."""
        next_seq = max((s for s, _ in _segment_files(self.slot)), default=0) + 1
        for other in sorted(directory.glob("slot-*")):
            if other == self.slot:
                continue
            lock = _try_lock(other)
            if lock is None:
                continue  # a live process owns it
            try:
                for _, path in _segment_files(other):
                    path.rename(self.slot / f"{next_seq:012d}.jsonl")
                    next_seq += 1
            finally:
                lock.close()

    def _scan(self) -> None:
        for seq, path in _segment_files(self.slot):
            records = sum(row["occurrences"] for row in self._rows(path, count=True))
            self._segments.append(Segment(seq, path, path.stat().st_size, records))

    def _rows(self, path: Path, *, count: bool = False) -> Iterator[dict[str, Any]]:
        with path.open("rb") as handle:
            for line in handle:
                try:
                    yield decode_line(line)
                except ValueError:
                    if count:
                        self.corrupt_lines += 1

    @property
    def bytes(self) -> int:
        """Bytes held in all segments."""
        return sum(s.size for s in self._segments)

    @property
    def records(self) -> int:
        """Records (summed occurrences) waiting in the journal."""
        return sum(s.records for s in self._segments)

    def __bool__(self) -> bool:
        return bool(self._segments)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append `rows` durably (one write, one fsync); returns how many fit under `max_bytes` (a prefix)."""
        room = self.max_bytes - self.bytes
        lines: list[bytes] = []
        for row in rows:
            line = orjson.dumps(row) + b"\n"
            if len(line) > room:
                break
            room -= len(line)
            lines.append(line)
        if not lines:
            return 0
        data = b"".join(lines)
        segment = self._open
        if segment is None or segment.size >= self.segment_bytes:
            seq = max((s.seq for s in self._segments), default=0) + 1
            segment = Segment(seq, self.slot / f"{seq:012d}.jsonl", 0, 0)
            self._segments.append(segment)
            self._open = segment
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        segment.size += len(data)
        segment.records += sum(int(row["occurrences"]) for row in rows[: len(lines)])
        return len(lines)

    def oldest(self) -> Segment | None:
        """The segment to replay first (sealed: later appends start a new one)."""
        if not self._segments:
            return None
        oldest = self._segments[0]
        if oldest is self._open:
            self._open = None
        return oldest

    def rows(self, segment: Segment) -> list[dict[str, Any]]:
        """The rows of `segment` not written yet (damaged lines skipped and counted)."""
        return list(self._rows(segment.path))[segment.done :]

    def progress(self, segment: Segment, lines: int, records: int) -> None:
        """`lines` more rows of `segment` (holding `records`) are in the database."""
        segment.done += lines
        segment.records -= records

    def remove(self, segment: Segment) -> None:
        """Every row of `segment` is in the database: delete it."""
        segment.path.unlink(missing_ok=True)
        self._segments.remove(segment)
        if self._open is segment:
            self._open = None

    def close(self) -> None:
        """Release the slot (its segments stay for the next process)."""
        self._lock.close()


def _try_lock(slot: Path) -> IO[bytes] | None:
    slot.mkdir(mode=0o700, exist_ok=True)
    handle = (slot / "lock").open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _segment_files(slot: Path) -> list[tuple[int, Path]]:
    found = []
    for path in slot.glob("*.jsonl"):
        try:
            found.append((int(path.stem), path))
        except ValueError:
            continue
    return sorted(found)


__all__ = ["Journal", "Segment", "decode_line"]

"""The failure queue: what the student could not handle, kept for the next distillation round.

One JSONL file per stage (``<work_dir>/<stage>/queue.jsonl``). A record is an input the router
sent to the teacher, or a held-out case where student and teacher disagreed beyond a threshold,
with the teacher's output. Records are keyed like teacher labels (:func:`ragdistill.common.cache.label_key`
of teacher id, template and input), so

- the same input is queued once (appends are deduplicated by that key, across processes: an
  append takes an exclusive lock on the file and first reads what others appended);
- each append is one ``write`` of one whole line, flushed to disk: a killed run keeps every
  finished record; a torn last line (a kill mid-write) is dropped on the next open;
- the teacher's output also goes into the label cache under the same key, so the next round's
  ``teach data.extra=queue`` finds it there and never calls the teacher again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.cache import LabelCache, label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import queue_path

log = get_logger(__name__)

REASONS = ("routed", "disagreement")


@dataclass
class QueueRecord:
    key: str  # label_key(teacher_id, template, input)
    input: Any  # the stage's teach payload (JSON), exactly as its teach would label it
    teacher_output: Any  # the teacher's label for it (np.ndarray for embeddings)
    teacher_id: str
    template: str
    reason: str  # "routed" | "disagreement"
    score: float | None  # the confidence that routed it, or the disagreement measured
    time: float

    def to_json(self) -> str:
        d = asdict(self)
        if isinstance(self.teacher_output, np.ndarray):
            d["teacher_output"], d["array"] = self.teacher_output.tolist(), True
        return json.dumps(d, ensure_ascii=False, default=_default)

    @classmethod
    def from_obj(cls, d: dict[str, Any], where: str) -> QueueRecord:
        missing = [k for k in ("key", "input", "teacher_output", "teacher_id") if k not in d]
        if missing:
            raise RagdistillError(f"{where}: queue record lacks {', '.join(missing)}; fix or remove that line")
        out = d["teacher_output"]
        if d.get("array"):
            out = np.asarray(out, dtype=np.float32)
        return cls(d["key"], d["input"], out, d["teacher_id"], d.get("template", ""), d.get("reason", "routed"),
                   d.get("score"), float(d.get("time", 0.0)))


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class FailureQueue:
    """Append-only, deduplicated queue file; see the module docstring."""

    def __init__(self, path: str | Path, cache: LabelCache | None = None) -> None:
        self.path, self.cache = Path(path), cache
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._keys: set[str] = set()
        self._offset = 0  # bytes of the file already read into _keys
        with self._locked() as fd:
            self._catch_up(fd)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _catch_up(self, fd: int) -> None:
        """Read what was appended since our last read (by us or another process); drop a torn tail."""
        size = os.fstat(fd).st_size
        if size < self._offset:  # replaced underneath us: start over
            self._keys.clear()
            self._offset = 0
        if size == self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            blob = f.read(size - self._offset)
        end = blob.rfind(b"\n") + 1
        if end < len(blob):
            log.warning("%s: dropping a torn last line (%d bytes) left by a killed run", self.path, len(blob) - end)
            os.ftruncate(fd, self._offset + end)
        first = 1 + _count_lines(self.path, self._offset)
        for i, line in enumerate(blob[:end].splitlines()):
            if line.strip():
                self._keys.add(_parse(line, f"{self.path}:{first + i}").key)
        self._offset += end

    def add(self, input: Any, teacher_output: Any, teacher_id: str, template: str = "", reason: str = "routed",
            score: float | None = None) -> bool:
        """Queue one input with the teacher's output; False when it was already queued."""
        return self.add_many([input], [teacher_output], teacher_id, template, reason, [score]) == 1

    def add_many(self, inputs: list[Any], teacher_outputs: list[Any], teacher_id: str, template: str = "",
                 reason: str = "routed", scores: list[float | None] | None = None) -> int:
        """Queue several inputs (one line and one flush each); returns how many were new."""
        if reason not in REASONS:
            raise RagdistillError(f"queue reason {reason!r}: use one of {', '.join(REASONS)}")
        if len(inputs) != len(teacher_outputs):
            raise RagdistillError(f"queue: {len(inputs)} inputs but {len(teacher_outputs)} teacher outputs")
        scores = list(scores) if scores is not None else [None] * len(inputs)
        records = [QueueRecord(label_key(teacher_id, template, x), x, y, teacher_id, template, reason,
                               None if s is None else float(s), time.time())
                   for x, y, s in zip(inputs, teacher_outputs, scores, strict=True)]
        if self.cache is not None:  # the label first: a record in the queue always has its label cached
            self.cache.put_many({r.key: r.teacher_output for r in records}, teacher_id)
        added = 0
        with self._locked() as fd:
            self._catch_up(fd)
            for r in records:
                if r.key in self._keys:
                    continue
                line = (r.to_json() + "\n").encode("utf-8")
                n = os.write(fd, line)
                if n != len(line):
                    raise RagdistillError(f"{self.path}: short write ({n} of {len(line)} bytes); disk full?")
                os.fsync(fd)
                self._keys.add(r.key)
                self._offset += len(line)
                added += 1
        return added


def _count_lines(path: Path, upto: int) -> int:
    if upto == 0:
        return 0
    with open(path, "rb") as f:
        return f.read(upto).count(b"\n")


def _parse(line: bytes, where: str) -> QueueRecord:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RagdistillError(f"{where}: malformed queue line ({e.msg}); fix or remove that line") from e
    if not isinstance(obj, dict):
        raise RagdistillError(f"{where}: a queue line must be a JSON object; fix or remove that line")
    return QueueRecord.from_obj(obj, where)


def load_queue(path: str | Path, cache: LabelCache | None = None) -> list[QueueRecord]:
    """The queued records, in order, deduplicated. With ``cache``, every record's teacher output is
    put in the label cache when missing there, so labelling the queued inputs calls no teacher."""
    path = Path(path)
    if not path.exists():
        raise RagdistillError(f"{path}: no failure queue here; route or calibrate a stage first, or fix data.extra")
    records: dict[str, QueueRecord] = {}
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    for i, line in enumerate(data[:end].splitlines(), start=1):
        if line.strip():
            r = _parse(line, f"{path}:{i}")
            records.setdefault(r.key, r)
    if end < len(data):
        log.warning("%s: ignoring a torn last line left by a killed run", path)
    if cache is not None and records:
        have = cache.get_many(list(records))
        missing = [r for k, r in records.items() if k not in have]
        for tid in {r.teacher_id for r in missing}:
            cache.put_many({r.key: r.teacher_output for r in missing if r.teacher_id == tid}, tid)
        if missing:
            log.info("%s: %d queued teacher outputs added to the label cache", path, len(missing))
    return list(records.values())


def extra_inputs(cfg: Any, stage: str, cache: LabelCache | None = None) -> list[QueueRecord]:
    """What ``data.extra`` adds to a stage's training inputs: nothing when unset, the stage's
    queue for ``data.extra=queue``, else the queue file at that path."""
    extra = cfg.data.get("extra") if hasattr(cfg.data, "get") else getattr(cfg.data, "extra", None)
    if not extra:
        return []
    path = queue_path(cfg, stage) if extra == "queue" else Path(extra)
    return load_queue(path, cache)

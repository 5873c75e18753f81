"""The content-addressed teacher-label cache every stage's ``teach`` writes through.

A label's key is the hash of (teacher id, prompt/template, input), so the same input labelled by
the same teacher with the same prompt is never paid for twice, and changing the teacher or the
prompt never serves a stale label. Labels live in one SQLite file (WAL mode); each batch is
committed in one transaction, so a killed run loses at most the batch in flight and a rerun
labels only what is missing. ``shard=i/n`` restricts a run to a deterministic 1/n of the keys,
written to its own file, so labelling can fan out over machines.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Shard:
    """One of ``count`` disjoint, deterministic slices of the keys."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str | None) -> Shard | None:
        if spec in (None, "", "null"):
            return None
        try:
            i, n = (int(x) for x in str(spec).split("/"))
        except ValueError:
            raise RagdistillError(f"shard={spec!r}: expected i/n, e.g. shard=0/4") from None
        if not 0 <= i < n:
            raise RagdistillError(f"shard={spec!r}: need 0 <= i < n")
        return cls(i, n)

    def owns(self, key: str) -> bool:
        return int(key[:15], 16) % self.count == self.index

    @property
    def suffix(self) -> str:
        return f".shard-{self.index}-of-{self.count}"


def label_key(teacher_id: str, template: str, payload: Any) -> str:
    """sha256 of the teacher id, the prompt/template and the canonical JSON of the input."""
    blob = json.dumps([teacher_id, template, payload], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _encode(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return b"N" + buf.getvalue()
    return b"J" + json.dumps(value, ensure_ascii=False).encode("utf-8")


def _decode(blob: bytes) -> Any:
    if blob[:1] == b"N":
        return np.load(io.BytesIO(blob[1:]), allow_pickle=False)
    return json.loads(blob[1:].decode("utf-8"))


def _is_damage(e: sqlite3.Error) -> bool:
    msg = str(e).lower()
    return type(e) is sqlite3.DatabaseError or any(m in msg for m in ("malformed", "not a database", "disk i/o", "corrupt"))


def damaged_cache_error(path: Path, e: Exception) -> RagdistillError:
    """The message for a label cache that SQLite cannot read: what happened and the way out."""
    return RagdistillError(
        f"{path}: the label cache is damaged ({e}). Keep the file: `ragdistill cache check {path} --salvage "
        f"{path}.salvaged` copies every readable label into a new cache; then move that over {path} and rerun "
        f"(only the lost labels are made again). Deleting {path} relabels everything")


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A :class:`LabelCache` method whose SQLite damage errors become one clear error naming the file."""
    import functools

    @functools.wraps(fn)
    def run(self: LabelCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as e:
            if _is_damage(e):
                raise damaged_cache_error(self.path, e) from None
            raise

    return run


class LabelCache:
    """Teacher labels on disk, keyed by :func:`label_key`."""

    @_guarded
    def __init__(self, path: str | Path, shard: Shard | None = None) -> None:
        path = Path(path)
        if shard is not None:
            path = path.with_name(path.name + shard.suffix)
        self.path, self.shard = path, shard
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=120)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, teacher TEXT, value BLOB, created REAL DEFAULT (julianday('now')))"
        )
        self._db.commit()

    @_guarded
    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

    @_guarded
    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM labels WHERE key=?", (key,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()

    @_guarded
    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            q = f"SELECT key, value FROM labels WHERE key IN ({','.join('?' * len(chunk))})"
            out.update((k, _decode(v)) for k, v in self._db.execute(q, chunk))
        return out

    @_guarded
    def put_many(self, items: dict[str, Any], teacher_id: str = "") -> None:
        """Write a batch in one transaction: all of it lands, or none of it."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO labels (key, teacher, value) VALUES (?, ?, ?)",
                [(k, teacher_id, _encode(v)) for k, v in items.items()],
            )

    @_guarded
    def items(self) -> list[tuple[str, Any]]:
        return [(k, _decode(v)) for k, v in self._db.execute("SELECT key, value FROM labels ORDER BY key")]

    @_guarded
    def label(
        self,
        inputs: Sequence[Any],
        compute: Callable[[list[Any]], Sequence[Any]],
        teacher_id: str,
        template: str = "",
        batch_size: int = 32,
        desc: str = "teacher labels",
    ) -> list[Any]:
        """Labels for ``inputs`` in order: cached ones are read, missing ones computed by
        ``compute(batch)`` and committed batch by batch. Inputs outside this cache's shard are
        skipped and returned as ``None``."""
        keys = [label_key(teacher_id, template, x) for x in inputs]
        have = self.get_many(keys)
        todo: list[int] = []
        seen: set[str] = set()
        for i, k in enumerate(keys):  # identical inputs are labelled once
            if k in have or k in seen or (self.shard is not None and not self.shard.owns(k)):
                continue
            seen.add(k)
            todo.append(i)
        # a serving-time call (one query of a pipeline) logs at DEBUG: a line per query says nothing
        log.log(logging.INFO if len(inputs) > 1 else logging.DEBUG, "%s: %d inputs, %d cached, %d to label (%s)", desc, len(inputs),
                len(have), len(todo), self.path)
        self.last_labelled = 0  # what this call computed (len(self) also counts other processes' writes)
        with tqdm(total=len(todo), desc=desc, unit="item", disable=not todo) as bar:
            for b in range(0, len(todo), batch_size):
                idx = todo[b : b + batch_size]
                values = list(compute([inputs[i] for i in idx]))
                if len(values) != len(idx):
                    raise RagdistillError(
                        f"teacher {teacher_id!r} returned {len(values)} labels for a batch of {len(idx)}"
                    )
                batch = {keys[i]: v for i, v in zip(idx, values, strict=True)}
                self.put_many(batch, teacher_id)
                have.update(batch)
                bar.update(len(idx))
                self.last_labelled += len(idx)
        return [have.get(k) for k in keys]

    # ---- portable copies: ship a dataset's teacher labels with the repo, merge shard files

    @_guarded
    def export_jsonl(self, path: str | Path, teacher_id: str | Sequence[str] | None = None, float16: bool = False) -> int:
        """Write labels (optionally only those of one or several teacher ids) as JSONL ``{key, teacher,
        value}``, gzip when ``path`` ends in ``.gz``. Arrays are lists of floats, or with ``float16``
        base64 of their float16 bytes (``"f16": true``): a quarter of the size, cosine to the original
        above 0.9999 for embeddings (what shipping a corpus's teacher embeddings needs)."""
        import base64

        from ragdistill.common.io import write_jsonl

        ids = [teacher_id] if isinstance(teacher_id, str) else list(teacher_id or [])
        q = "SELECT key, teacher, value FROM labels" + (f" WHERE teacher IN ({','.join('?' * len(ids))})" if ids else "") + " ORDER BY key"
        rows = []
        for k, t, v in self._db.execute(q, ids):
            val = _decode(v)
            row: dict[str, Any] = {"key": k, "teacher": t, "value": val, "array": isinstance(val, np.ndarray)}
            if isinstance(val, np.ndarray):
                if float16:
                    row.update(value=base64.b64encode(val.astype("<f2").tobytes()).decode("ascii"), f16=True, shape=list(val.shape))
                else:
                    row["value"] = val.tolist()
            rows.append(row)
        write_jsonl(path, rows)
        return len(rows)

    @_guarded
    def import_jsonl(self, path: str | Path) -> int:
        """Add labels from :meth:`export_jsonl` output that this cache lacks; returns how many were added."""
        from ragdistill.common.io import iter_jsonl

        rows = {}
        for lineno, r in iter_jsonl(path):
            if not isinstance(r, dict) or "key" not in r or "value" not in r:
                raise RagdistillError(f"{path}:{lineno}: expected {{\"key\", \"teacher\", \"value\"}} (a label-cache export)")
            rows[r["key"]] = (r.get("teacher", ""), _array_of(r, f"{path}:{lineno}") if r.get("array") else r["value"])
        have = self.get_many(list(rows))
        new = {k: v for k, v in rows.items() if k not in have}
        for teacher in {t for t, _ in new.values()}:
            self.put_many({k: v for k, (t, v) in new.items() if t == teacher}, teacher)
        return len(new)

    @_guarded
    def import_file(self, path: str | Path) -> int:
        """:meth:`import_jsonl`, once per file content: a shipped label file (tens of MB for a corpus's
        embeddings) is read the first time this cache sees it, and skipped on every later open."""
        path = Path(path)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        sig = h.hexdigest()
        self._db.execute("CREATE TABLE IF NOT EXISTS imports (sha256 TEXT PRIMARY KEY, path TEXT, rows INTEGER)")
        if self._db.execute("SELECT 1 FROM imports WHERE sha256=?", (sig,)).fetchone():
            return 0
        added = self.import_jsonl(path)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO imports (sha256, path, rows) VALUES (?, ?, ?)", (sig, str(path), added))
        return added


def _array_of(row: dict[str, Any], where: str) -> np.ndarray:
    """An exported array label: a list of floats, or base64 float16 bytes (``f16``)."""
    import base64
    import binascii

    try:
        if row.get("f16"):
            return np.frombuffer(base64.b64decode(row["value"]), dtype="<f2").astype(np.float32).reshape(row.get("shape") or (-1,))
        return np.asarray(row["value"], dtype=np.float32)
    except (ValueError, TypeError, binascii.Error) as e:
        raise RagdistillError(f"{where}: the array label is damaged ({e}); re-export the labels or remove that line") from None


# ---- shard files from `launcher=shards run.shard=i/n` joined into one cache


@dataclass
class MergeReport:
    """What :func:`merge_caches` did: rows read per file, rows added, identical duplicates."""

    out: Path
    rows_before: int
    rows_after: int
    per_file: dict[str, tuple[int, int]]  # file -> (rows in it, rows it added)
    duplicates: int  # keys present in more than one input with the same value
    missing_shards: list[str]  # e.g. ["1/4"] when a shard file of a set was not given

    def summary(self) -> str:
        lines = [f"merged {len(self.per_file)} file(s) into {self.out}"]
        for f, (rows, added) in self.per_file.items():
            lines.append(f"  {f}: {rows} rows, {added} new")
        lines.append(f"  identical duplicates skipped: {self.duplicates}")
        lines.append(f"  rows: {self.rows_before} before, {self.rows_after} after")
        if self.missing_shards:
            lines.append(f"  warning: shard(s) {', '.join(self.missing_shards)} of the set were not given")
        return "\n".join(lines)


def _check_label_db(path: Path) -> None:
    if not path.is_file():
        raise RagdistillError(f"{path}: no such label cache file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        ok = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='labels'").fetchone()
        db.close()
    except sqlite3.DatabaseError as e:
        raise RagdistillError(f"{path}: not a label cache ({e})") from None
    if not ok:
        raise RagdistillError(f"{path}: not a label cache (no 'labels' table); pass files written by `teach`")


def _missing_shards(paths: Sequence[Path]) -> list[str]:
    import re

    sets: dict[int, set[int]] = {}
    for p in paths:
        m = re.search(r"\.shard-(\d+)-of-(\d+)$", p.name)
        if m:
            sets.setdefault(int(m[2]), set()).add(int(m[1]))
    return [f"{i}/{n}" for n, have in sorted(sets.items()) for i in range(n) if i not in have]


def _has_key(path: Path, key: str) -> bool:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM labels WHERE key=?", (key,)).fetchone() is not None
    finally:
        db.close()


def _same_value(a: bytes, b: bytes, atol: float) -> bool:
    if a == b:
        return True
    if atol > 0 and a[:1] == b[:1] == b"N":
        x, y = _decode(a), _decode(b)
        return x.shape == y.shape and bool(np.allclose(x, y, rtol=0.0, atol=atol))
    return False


def merge_caches(out: str | Path, shards: Sequence[str | Path], atol: float = 0.0) -> MergeReport:
    """Join label-cache files (typically ``<cache>.shard-i-of-n``) into ``out``.

    A key found in two files (or in ``out`` already) must carry the same value: else a
    :class:`RagdistillError` names the key and both files and ``out`` is left untouched (the
    merge is written beside it and renamed over it only when every file is in). ``atol`` lets
    embedding labels that differ only by float noise (another machine's BLAS) count as equal.
    """
    from ragdistill.common.io import atomic_path

    out = Path(out)
    paths = [Path(s) for s in shards]
    if not paths:
        raise RagdistillError("cache merge: no shard files given")
    for p in paths:
        _check_label_db(p)
        if out.exists() and p.resolve() == out.resolve():
            raise RagdistillError(f"cache merge: {p} is both an input and the output; write to a new file")
    if out.exists():
        _check_label_db(out)
    per_file: dict[str, tuple[int, int]] = {}
    duplicates = 0
    with atomic_path(out) as tmp:
        LabelCache(tmp).close()  # the schema
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename
        sources = ([out] if out.exists() else []) + paths
        rows_before = 0
        for n, src in enumerate(sources):
            db.execute("ATTACH DATABASE ? AS src", (str(src),))
            rows = db.execute("SELECT COUNT(*) FROM src.labels").fetchone()[0]
            clash = db.execute(
                "SELECT s.key, s.value, m.value FROM src.labels s JOIN main.labels m ON s.key = m.key WHERE s.value != m.value"
            )
            for key, new, old in clash:
                if not _same_value(new, old, atol):
                    first = next(p for p in sources[:n] if _has_key(p, key))
                    db.close()
                    raise RagdistillError(
                        f"cache merge: key {key} has different values in {first} and {src}; the shards were labelled "
                        "by different teachers or settings under the same id. Relabel one of them (delete it and rerun "
                        "its shard) or merge them into separate caches"
                    )
            same = db.execute("SELECT COUNT(*) FROM src.labels s JOIN main.labels m ON s.key = m.key").fetchone()[0]
            with db:
                cur = db.execute("INSERT OR IGNORE INTO main.labels (key, teacher, value, created) SELECT key, teacher, value, created FROM src.labels")
            db.execute("DETACH DATABASE src")
            if n == 0 and out.exists():
                rows_before = rows
            else:
                per_file[str(src)] = (rows, cur.rowcount)
                duplicates += same
        rows_after = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        db.close()
        for side in ("-wal", "-shm"):  # a stale journal beside the old file must not be replayed onto the new one
            out.with_name(out.name + side).unlink(missing_ok=True)
    return MergeReport(out, rows_before, rows_after, per_file, duplicates, _missing_shards(paths))


def cache_stats(path: str | Path) -> dict[str, Any]:
    """Rows per teacher and per value kind (array / json) and the file size."""
    path = Path(path)
    _check_label_db(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        per_teacher = dict(db.execute("SELECT teacher, COUNT(*) FROM labels GROUP BY teacher ORDER BY teacher").fetchall())
        kinds = {("array" if k == "N" else "json"): c for k, c in db.execute(
            "SELECT CAST(substr(value, 1, 1) AS TEXT), COUNT(*) FROM labels GROUP BY 1")}
        total = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    except sqlite3.Error as e:
        raise damaged_cache_error(path, e) from None
    finally:
        db.close()
    return {"path": str(path), "rows": total, "bytes": path.stat().st_size, "teachers": per_teacher, "kinds": kinds}


@dataclass
class CheckReport:
    """What :func:`check_cache` found: SQLite's own verdict, readable rows, and what was salvaged."""

    path: Path
    ok: bool  # SQLite's integrity check passed and every row decodes
    integrity: str  # "ok" or SQLite's first complaints
    readable: int  # rows read back whole (key, teacher, value that decodes)
    unreadable: int  # row ranges SQLite could not read plus rows whose value does not decode
    salvaged_to: Path | None = None

    def summary(self) -> str:
        lines = [f"{self.path}: {'ok' if self.ok else 'DAMAGED'} (integrity check: {self.integrity})",
                 f"  readable labels: {self.readable}; unreadable rows or ranges: {self.unreadable}"]
        if self.salvaged_to is not None:
            lines.append(f"  salvaged {self.readable} labels into {self.salvaged_to}; move it over {self.path} and rerun "
                         "teach: only the lost labels are made again")
        elif not self.ok:
            lines.append(f"  salvage what is readable: ragdistill cache check {self.path} --salvage {self.path}.salvaged")
        return "\n".join(lines)


def _readable_rows(db: sqlite3.Connection, window: int = 256) -> tuple[list[tuple[Any, ...]], int]:
    """Every row of ``labels`` SQLite can still read, in windows of rowids (a damaged page loses its
    window, not the file), with the count of windows or rows lost. Past the last readable window,
    64 unreadable windows in a row end the scan (a truncated file's tail)."""
    rows: list[tuple[Any, ...]] = []
    lost = misses = 0
    try:
        top = db.execute("SELECT MAX(rowid) FROM labels").fetchone()[0] or 0
    except sqlite3.Error:
        top = None  # the right edge of the b-tree is gone: scan until the reads stop
    lo = 0
    while (top is None and misses < 64) or (top is not None and lo <= top):
        try:
            got = db.execute("SELECT key, teacher, value, created FROM labels WHERE rowid BETWEEN ? AND ?", (lo, lo + window - 1)).fetchall()
            misses = 0
        except sqlite3.Error:
            lost += 1
            misses += 1
            got = []
        for r in got:
            try:
                _decode(r[2])
                rows.append(r)
            except Exception:
                lost += 1
        lo += window
    return rows, lost - (misses if top is None else 0)  # the windows past a truncated end held nothing


def _repaired_copy(path: Path, dest: Path) -> None:
    """A copy SQLite can open: a truncated file's header still counts the pages it lost, which makes
    SQLite refuse even the schema; the copy keeps the whole pages and the header counts only those."""
    import struct

    data = bytearray(path.read_bytes())
    if data[:16] == b"SQLite format 3\x00" and len(data) >= 100:
        page = struct.unpack(">H", data[16:18])[0]
        page = 65536 if page == 1 else page
        n = len(data) // page
        data = data[: n * page]
        data[28:32] = struct.pack(">I", n)
    dest.write_bytes(bytes(data))


def check_cache(path: str | Path, salvage: str | Path | None = None) -> CheckReport:
    """SQLite's integrity check of a label cache, and every row read back; with ``salvage``, the
    readable rows copied into a new cache file (``path`` itself is never written)."""
    path = Path(path)
    if not path.is_file():
        raise RagdistillError(f"{path}: no such label cache file")
    import shutil
    import tempfile

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        integrity = "; ".join(r[0] for r in db.execute("PRAGMA integrity_check(5)").fetchall())
        db.close()
    except sqlite3.Error as e:  # too damaged for the check itself: the rows may still be readable
        integrity = f"failed: {e}"
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / path.name
        _repaired_copy(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.is_file():  # commits not yet checkpointed into the main file are replayed from the copy
            shutil.copy2(wal, copy.with_name(copy.name + "-wal"))
        try:
            db = sqlite3.connect(copy)
            rows, lost = _readable_rows(db)
            db.close()
        except sqlite3.Error as e:
            return CheckReport(path, False, f"{integrity}; unreadable: {e}", 0, 1)
    report = CheckReport(path, integrity == "ok" and lost == 0, integrity, len(rows), lost)
    if salvage is not None:
        out = Path(salvage)
        if out.exists():
            raise RagdistillError(f"{out} exists; salvage into a new file")
        from ragdistill.common.io import atomic_path

        with atomic_path(out) as tmp:
            LabelCache(tmp).close()
            new = sqlite3.connect(tmp)
            new.execute("PRAGMA journal_mode=DELETE")
            with new:
                new.executemany("INSERT OR IGNORE INTO labels (key, teacher, value, created) VALUES (?, ?, ?, ?)", rows)
            new.close()
        report.salvaged_to = out
    return report

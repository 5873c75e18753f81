"""File IO that never loses finished work: atomic writes, JSONL that names the bad line."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ragdistill.common.errors import RagdistillError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A run killed mid-write leaves the previous file intact (rename is atomic on POSIX).
    Works for files and directories alike.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            backup = path.with_name(f".{path.name}.old")
            _remove(backup)
            os.replace(path, backup)
            os.replace(tmp, path)
            _remove(backup)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp.parent)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON atomically (indented, numpy-safe)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _not_utf8(path: Path, data: bytes, e: UnicodeDecodeError, first_line: int = 1) -> RagdistillError:
    """Where a byte that is not UTF-8 sits (line and column), and the fix."""
    line = first_line + data.count(b"\n", 0, e.start)
    col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    return RagdistillError(f"{path}:{line}: byte 0x{data[e.start]:02x} at column {col} is not UTF-8 text; save the file as "
                           "UTF-8 (e.g. iconv -f latin1 -t utf-8) or fix that character")


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole UTF-8 file (gzip when named .gz); a byte that is not UTF-8 is an error naming the line."""
    path = Path(path)
    if not path.exists():
        raise RagdistillError(f"{path}: file not found")
    data = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, data, e) from None


def text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 text file (gzip when named .gz), decoded line by line: a
    byte that is not UTF-8 is an error naming the file, line and column, not a buffer offset."""
    path = Path(path)
    if not path.exists():
        raise RagdistillError(f"{path}: file not found")
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, raw, e, lineno) from None


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise RagdistillError(f"{path}:{e.lineno}: malformed JSON ({e.msg}); fix or delete the file") from e


def _open_text(path: Path, mode: str) -> IO[str]:
    """A text handle; a ``.gz`` name is gzip (shipped label files are several MB as plain JSONL)."""
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> Path:
    """Write JSON Lines atomically (gzip-compressed when ``path`` ends in ``.gz``)."""
    with atomic_path(path) as tmp, _open_text(tmp, "w") as f:  # tmp has path's name, so a .gz path is written as gzip
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
    return Path(path)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)``; blank lines are skipped, a malformed line is an error
    that names the file and the line. A ``.gz`` file is read through gzip."""
    path = Path(path)
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RagdistillError(
                f"{path}:{lineno}: malformed JSON line ({e.msg} at column {e.colno}); "
                "each line must be one JSON object: fix or remove that line"
            ) from e
        yield lineno, obj


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    return [obj for _, obj in iter_jsonl(path)]


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

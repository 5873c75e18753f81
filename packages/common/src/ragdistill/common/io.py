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


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.exists():
        raise RagdistillError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
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
    if not path.exists():
        raise RagdistillError(f"{path}: file not found")
    with _open_text(path, "r") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise RagdistillError(
                    f"{path}:{lineno}: malformed JSON line ({e.msg} at column {e.colno}); "
                    "each line must be one JSON object: fix or remove that line"
                ) from e


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

"""A damaged label cache is a clear error naming the file and the way out, and `cache check` salvages it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ragdistill.common.cache import LabelCache, check_cache, label_key
from ragdistill.common.errors import RagdistillError


def _filled(path, n=3000):
    cache = LabelCache(path)
    cache.put_many({label_key("t", "", i): np.full(64, i, dtype=np.float32) for i in range(n)}, "t")
    cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, as after a finished run
    cache.close()
    return path


def _ragdistill(*args):
    return subprocess.run([sys.executable, "-m", "ragdistill.common.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_overwritten_cache_is_a_clear_error_everywhere(tmp_path):
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"this is not a database, someone copied a log over it\n" * 100)
    with pytest.raises(RagdistillError, match=r"labels\.sqlite: the label cache is damaged .*ragdistill cache check .* --salvage"):
        LabelCache(path)
    r = _ragdistill("cache", "stats", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "labels.sqlite: not a label cache" in r.stderr
    report = check_cache(path)
    assert not report.ok and report.readable == 0


def test_truncated_cache_salvages_the_readable_rows(tmp_path):
    path = _filled(tmp_path / "labels.sqlite")
    assert check_cache(path).ok and check_cache(path).readable == 3000
    size = path.stat().st_size
    with open(path, "r+b") as f:  # a disk-full or killed copy: the second half of the file is gone
        f.truncate(size // 2)
    with pytest.raises(RagdistillError, match="the label cache is damaged"):
        cache = LabelCache(path)
        cache.get_many([label_key("t", "", i) for i in range(3000)])
    r = _ragdistill("cache", "check", str(path))
    assert r.returncode == 1 and "DAMAGED" in r.stdout and "--salvage" in r.stdout and "Traceback" not in r.stderr
    out = tmp_path / "salvaged.sqlite"
    report = check_cache(path, salvage=out)
    assert 0 < report.readable < 3000 and report.salvaged_to == out
    fresh = LabelCache(out)
    got = fresh.get_many([label_key("t", "", i) for i in range(3000)])
    assert len(got) == report.readable
    assert all(np.array_equal(v, np.full(64, int(v[0]), dtype=np.float32)) for v in got.values())  # rows intact, not just present
    fresh.close()
    assert check_cache(out).ok
    with pytest.raises(RagdistillError, match="exists; salvage into a new file"):
        check_cache(path, salvage=out)

"""launcher=shards: shard caches merged into one equal the single-run cache; conflicts are refused."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ragdistill.common.cache import LabelCache, Shard, cache_stats, merge_caches
from ragdistill.common.cli import main
from ragdistill.common.data import load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers import build_teacher


@pytest.fixture(scope="module")
def embed():
    # batch_size=1: every passage is encoded alone, so a shard run computes exactly the bytes a single run does
    teacher = build_teacher({"backend": "sentence_transformer", "model": "minilm-l6", "batch_size": 1, "max_length": 32})
    texts = [d.full_text for d in list(load_retrieval("scifact").corpus.values())[:24]]
    return teacher, texts


def _rows(path):
    db = sqlite3.connect(path)
    rows = db.execute("SELECT key, teacher, value FROM labels ORDER BY key").fetchall()
    db.close()
    return rows


def test_shards_merged_equal_the_single_run_cache(tmp_path, embed, capsys):
    teacher, texts = embed
    single = LabelCache(tmp_path / "single.sqlite")
    single.label(texts, teacher.embed, teacher.teacher_id, batch_size=8)
    shard_files = []
    for i in range(3):
        c = LabelCache(tmp_path / "labels.sqlite", shard=Shard(i, 3))
        out = c.label(texts, teacher.embed, teacher.teacher_id, batch_size=8)
        assert 0 < sum(o is not None for o in out) < len(texts)
        shard_files.append(str(c.path))
        c.close()

    main(["cache", "merge", str(tmp_path / "merged.sqlite"), *shard_files])
    printed = capsys.readouterr().out
    assert "merged 3 file(s)" in printed and f"rows: 0 before, {len(texts)} after" in printed
    assert "warning" not in printed
    assert _rows(tmp_path / "merged.sqlite") == _rows(tmp_path / "single.sqlite")  # same keys, teachers, value bytes

    merged = LabelCache(tmp_path / "merged.sqlite")
    again = merged.label(texts, lambda b: pytest.fail("everything must come from the merged cache"), teacher.teacher_id)
    assert all(np.array_equal(a, b) for a, b in zip(again, single.label(texts, teacher.embed, teacher.teacher_id), strict=True))
    merged.close()

    # merging a shard again adds nothing; its rows count as identical duplicates; a missing shard is reported
    report = merge_caches(tmp_path / "merged.sqlite", shard_files[:2])
    assert report.rows_before == report.rows_after == len(texts)
    assert sum(added for _, added in report.per_file.values()) == 0
    assert report.duplicates == sum(rows for rows, _ in report.per_file.values())
    assert report.missing_shards == ["2/3"]
    st = cache_stats(tmp_path / "merged.sqlite")
    assert st["rows"] == len(texts) and st["kinds"] == {"array": len(texts)} and st["teachers"] == {teacher.teacher_id: len(texts)}


def test_conflicting_shards_name_the_key_and_both_files(tmp_path, capsys):
    a = LabelCache(tmp_path / "labels.sqlite", shard=Shard(0, 2))
    b = LabelCache(tmp_path / "labels.sqlite", shard=Shard(1, 2))
    inputs = [f"question {i}" for i in range(20)]
    a.label(inputs, lambda xs: [x.upper() for x in xs], "t")
    from ragdistill.common.cache import label_key

    key = label_key("t", "", "question 3")
    owner, other = (a, b) if a.shard.owns(key) else (b, a)
    other.put_many({key: "A DIFFERENT ANSWER"}, "t")  # same key, another value
    owner.label(inputs, lambda xs: [x.upper() for x in xs], "t")
    LabelCache(tmp_path / "out.sqlite").put_many({"k0": "kept"}, "t")
    before = _rows(tmp_path / "out.sqlite")
    with pytest.raises(RagdistillError) as e:
        merge_caches(tmp_path / "out.sqlite", [a.path, b.path])
    msg = str(e.value)
    assert key in msg and str(a.path) in msg and str(b.path) in msg and "different values" in msg
    assert _rows(tmp_path / "out.sqlite") == before  # the output is untouched
    with pytest.raises(SystemExit) as ex:  # the CLI prints the same message and exits 2
        main(["cache", "merge", str(tmp_path / "out.sqlite"), str(a.path), str(b.path)])
    assert ex.value.code == 2 and key in capsys.readouterr().err


def test_near_equal_embeddings_merge_with_a_tolerance(tmp_path):
    a, b = LabelCache(tmp_path / "a.sqlite"), LabelCache(tmp_path / "b.sqlite")
    v = np.linspace(0, 1, 8, dtype=np.float32)
    a.put_many({"k": v}, "t")
    b.put_many({"k": v + np.float32(1e-6)}, "t")
    with pytest.raises(RagdistillError, match="key k has different values"):
        merge_caches(tmp_path / "m.sqlite", [a.path, b.path])
    assert merge_caches(tmp_path / "m.sqlite", [a.path, b.path], atol=1e-5).rows_after == 1
    with pytest.raises(RagdistillError, match="not a label cache"):
        (tmp_path / "junk.sqlite").write_text("not sqlite at all, just text" * 10)
        merge_caches(tmp_path / "m2.sqlite", [tmp_path / "junk.sqlite"])
    with pytest.raises(RagdistillError, match="no such label cache file"):
        merge_caches(tmp_path / "m2.sqlite", [tmp_path / "nope.sqlite"])

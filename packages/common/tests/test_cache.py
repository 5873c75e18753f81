"""The label cache: content addressing, sharding, and resume after a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ragdistill.common.cache import LabelCache, Shard, label_key
from ragdistill.common.errors import RagdistillError


def test_keys_depend_on_teacher_template_and_input():
    k = label_key("t", "tpl", {"q": "x"})
    assert k == label_key("t", "tpl", {"q": "x"})
    assert len({k, label_key("t2", "tpl", {"q": "x"}), label_key("t", "tpl2", {"q": "x"}), label_key("t", "tpl", {"q": "y"})}) == 4


def test_second_run_costs_nothing_and_values_round_trip(tmp_path):
    cache = LabelCache(tmp_path / "c.sqlite")
    calls = []

    def compute(batch):
        calls.extend(batch)
        return [np.full(3, len(x), dtype=np.float32) if x.startswith("v") else {"len": len(x)} for x in batch]

    inputs = ["v1", "abc", "v22", "abc"]
    out1 = cache.label(inputs, compute, teacher_id="t", batch_size=2)
    assert calls == ["v1", "abc", "v22"]  # the duplicate is labelled once
    out2 = cache.label(inputs, compute, teacher_id="t")
    assert len(calls) == 3
    assert out2[1] == {"len": 3} and np.array_equal(out2[2], np.full(3, 3, dtype=np.float32))
    assert out1[3] == out2[3]


@pytest.mark.parametrize("name", ["labels.jsonl", "labels.jsonl.gz"])  # shipped label files are gzip
def test_export_import_round_trip(tmp_path, name):
    a = LabelCache(tmp_path / "a.sqlite")
    a.label(["x", "y"], lambda b: [np.ones(2, dtype=np.float32) if s == "x" else "text" for s in b], teacher_id="t")
    assert a.export_jsonl(tmp_path / name) == 2
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"  # really gzip, not plain text under a .gz name
    b = LabelCache(tmp_path / "b.sqlite")
    assert b.import_jsonl(tmp_path / name) == 2
    assert b.import_jsonl(tmp_path / name) == 0
    out = b.label(["x", "y"], lambda batch: pytest.fail("must come from the import"), teacher_id="t")
    assert out[1] == "text" and np.array_equal(out[0], np.ones(2))


def test_malformed_gzip_label_line_names_file_and_line(tmp_path):
    import gzip

    f = tmp_path / "labels.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        g.write('{"key": "k1", "teacher": "t", "value": 1.0}\n{"key": "k2", "value": \n')
    with pytest.raises(RagdistillError, match=r"labels\.jsonl\.gz:2: malformed JSON line"):
        LabelCache(tmp_path / "c.sqlite").import_jsonl(f)


def test_shards_partition_the_keys(tmp_path):
    inputs = [f"item {i}" for i in range(200)]
    seen = []
    for i in range(3):
        c = LabelCache(tmp_path / "c.sqlite", shard=Shard(i, 3))
        assert c.path.name == f"c.sqlite.shard-{i}-of-3"
        out = c.label(inputs, lambda b: [len(x) for x in b], teacher_id="t")
        seen += [x for x, o in zip(inputs, out, strict=True) if o is not None]
    assert sorted(seen) == sorted(inputs)
    with pytest.raises(RagdistillError, match="shard='3/3': need 0 <= i < n"):
        Shard.parse("3/3")


SCRIPT = textwrap.dedent(
    """
    import sys
    from ragdistill.common.cache import LabelCache
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.teachers import build_teacher

    cache_path, log_path = sys.argv[1], sys.argv[2]
    texts = [d.full_text[:200] for d in list(load_retrieval("scifact").corpus.values())[:160]]
    teacher = build_teacher({"backend": "sentence_transformer", "model": "minilm-l6", "batch_size": 16, "max_length": 64})

    def compute(batch):
        vecs = teacher.embed(batch)
        with open(log_path, "a") as f:
            f.writelines(t[:40].replace("\\n", " ") + "\\n" for t in batch)
        return list(vecs)

    LabelCache(cache_path).label(texts, compute, teacher.teacher_id, batch_size=16)
    """
)


def test_killed_labelling_run_resumes_without_recomputation(tmp_path):
    script = tmp_path / "label.py"
    script.write_text(SCRIPT)
    cache, log1, log2 = tmp_path / "c.sqlite", tmp_path / "run1.log", tmp_path / "run2.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen([sys.executable, str(script), str(cache), str(log1)], env=env)
    deadline = time.time() + 240
    while time.time() < deadline and (not log1.exists() or len(log1.read_text().splitlines()) < 48):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    committed = len(LabelCache(cache))
    assert 48 <= committed < 160, "the run must be killed midway"
    subprocess.run([sys.executable, str(script), str(cache), str(log2)], env=env, check=True)
    run2 = log2.read_text().splitlines()
    assert len(run2) == 160 - committed  # only what was missing is labelled again
    assert len(LabelCache(cache)) == 160  # nothing lost
    run1_committed = Path(log1).read_text().splitlines()[:committed]
    assert not set(run1_committed) & set(run2)  # no committed item is labelled twice

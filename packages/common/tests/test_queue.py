"""The failure queue: deduplicated by label key, survives a killed writer, feeds the next teach from the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from omegaconf import OmegaConf

from ragdistill.common.cache import LabelCache, label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.ops.failure_queue import FailureQueue, extra_inputs, load_queue, queue_path


def test_dedup_reload_and_labels_come_from_the_cache(tmp_path):
    path = tmp_path / "embedder" / "queue.jsonl"
    cache = LabelCache(tmp_path / "labels.sqlite")
    q = FailureQueue(path, cache)
    vec = np.array([0.6, 0.8], dtype=np.float32)
    assert q.add("what causes scurvy", vec, "st:mpnet", reason="routed", score=0.01)
    assert not q.add("what causes scurvy", vec, "st:mpnet")  # same content hash: not queued twice
    assert q.add_many(["q2", "q3", "q2"], [vec * 0, vec, vec * 0], "st:mpnet", reason="disagreement", scores=[0.7, 0.9, 0.7]) == 2
    assert len(q) == 3 and label_key("st:mpnet", "", "q3") in q
    assert len(path.read_text().splitlines()) == 3
    assert len(FailureQueue(path)) == 3  # another process sees the same keys

    fresh = LabelCache(tmp_path / "fresh.sqlite")  # e.g. the next round on another machine
    recs = load_queue(path, fresh)
    assert [r.input for r in recs] == ["what causes scurvy", "q2", "q3"]
    assert isinstance(recs[0].teacher_output, np.ndarray) and np.allclose(recs[0].teacher_output, vec)
    assert recs[1].reason == "disagreement" and recs[1].score == pytest.approx(0.7)

    def no_teacher(batch):
        raise AssertionError("the teacher must not be called for queued inputs")

    for c in (cache, fresh):
        labels = c.label([r.input for r in recs], no_teacher, "st:mpnet", desc="queued")
        assert np.allclose(labels[0], vec) and np.allclose(labels[2], vec)


def test_data_extra_queue_resolves_the_stage_queue(tmp_path):
    cfg = OmegaConf.create({"paths": {"work_dir": str(tmp_path)}, "data": {"extra": "queue"}})
    FailureQueue(queue_path(cfg, "generator")).add({"question": "q", "contexts": ["c"]}, "an answer", "lm:qwen")
    recs = extra_inputs(cfg, "generator")
    assert len(recs) == 1 and recs[0].teacher_output == "an answer"
    assert extra_inputs(OmegaConf.create({"paths": {"work_dir": str(tmp_path)}, "data": {"extra": None}}), "generator") == []
    cfg.data.extra = str(tmp_path / "nope.jsonl")
    with pytest.raises(RagdistillError, match=r"nope\.jsonl: no failure queue here"):
        extra_inputs(cfg, "generator")


WRITER = """
import sys
import numpy as np
from ragdistill.common.cache import LabelCache
from ragdistill.common.ops.failure_queue import FailureQueue
q = FailureQueue(sys.argv[1], LabelCache(sys.argv[2]))
for i in range(int(sys.argv[3])):
    q.add({"query": f"input {i}"}, np.full(64, i, dtype=np.float32), "st:teacher", score=float(i))
"""


def test_survives_a_killed_run_and_resumes(tmp_path):
    path, cache = tmp_path / "queue.jsonl", tmp_path / "labels.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n = 400
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(cache), str(n)])
    deadline = time.time() + 240
    while time.time() < deadline and (not path.exists() or path.read_bytes().count(b"\n") < 40):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the writer finished before it could be killed; raise n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recs = load_queue(path)
    done = len(recs)
    assert 40 <= done < n and len({r.key for r in recs}) == done
    assert [r.input["query"] for r in recs] == [f"input {i}" for i in range(done)]  # every finished record intact, in order
    subprocess.run([sys.executable, str(script), str(path), str(cache), str(n)], check=True)  # rerun: only the rest is added
    recs = load_queue(path, LabelCache(cache))
    assert len(recs) == n and len(path.read_text().splitlines()) == n
    assert np.allclose(recs[-1].teacher_output, n - 1)


def test_torn_last_line_is_dropped_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "queue.jsonl"
    q = FailureQueue(path)
    q.add("a", "A", "t")
    with open(path, "ab") as f:
        f.write(b'{"key": "deadbeef", "input": "b", "teacher_out')  # a kill in the middle of a write
    assert [r.input for r in load_queue(path)] == ["a"]
    q2 = FailureQueue(path)  # the next writer repairs the tail, then appends whole lines
    assert q2.add("c", "C", "t")
    assert [r.input for r in load_queue(path)] == ["a", "c"]
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    with pytest.raises(RagdistillError, match=r"queue.jsonl:2: malformed queue line"):
        load_queue(path)
    path.write_text(lines[0] + '\n{"input": "x"}\n')
    with pytest.raises(RagdistillError, match=r"queue.jsonl:2: queue record lacks key, teacher_output, teacher_id"):
        FailureQueue(path)

"""run.launcher=ray: a Ray Data pipeline (local runtime, 2 CPUs) labels real data into the label cache,
and a run killed midway is resumed by a rerun that labels only what is missing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ragdistill.common.cache import LabelCache, Shard, label_key
from ragdistill.common.data import load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.common.labelling import LaunchSettings, label_with_teacher, launch_settings, run_labelling

ray = pytest.importorskip("ray")
TEACHER = {"backend": "sentence_transformer", "model": "minilm-l6", "batch_size": 8, "max_length": 64}


@pytest.fixture(scope="module")
def runtime():
    """One local Ray runtime for the module (starting one costs ~10 s); subprocess drivers join it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def passages():
    return [d.full_text for d in list(load_retrieval("scifact").corpus.values())[:120]]


def _created(path):
    db = sqlite3.connect(path)
    rows = dict(db.execute("SELECT key, created FROM labels"))
    db.close()
    return rows


def _teacher_ids(path):
    db = sqlite3.connect(path)
    ids = {t for (t,) in db.execute("SELECT DISTINCT teacher FROM labels")}
    db.close()
    return ids


def test_ray_labels_real_passages_into_the_cache(runtime, passages, tmp_path):
    texts = passages[:32]
    cache = LabelCache(tmp_path / "labels.sqlite")
    launch = LaunchSettings("ray", num_workers=2, batch_size=8)
    run = run_labelling(cache, TEACHER, "embed", texts + texts[:4], launch, desc="scifact passages")
    assert (run.total, run.cached, run.labelled) == (36, 0, 32)  # duplicates are labelled once
    assert len(cache) == 32 and all(isinstance(v, np.ndarray) and v.shape == (384,) and v.dtype == np.float32 for v in run.labels)

    # the same keys and (up to float noise of another batch layout) the same vectors as labelling in this process
    local = LabelCache(tmp_path / "local.sqlite")
    ref = run_labelling(local, TEACHER, "embed", texts, "local")
    assert set(_created(local.path)) == set(_created(cache.path))
    for a, b in zip(run.labels, ref.labels, strict=False):
        assert np.allclose(a, b, atol=1e-5)

    (tid,) = _teacher_ids(cache.path)  # a known teacher id spares the probe (one teacher load on a worker)
    again = run_labelling(cache, TEACHER, "embed", texts, launch, teacher_id=tid)
    assert (again.cached, again.labelled) == (32, 0)


KILLED_RUN = textwrap.dedent(
    """
    import sys
    import ray
    from ragdistill.common.cache import LabelCache
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.labelling import LaunchSettings, run_labelling

    import threading

    class SignallingCache(LabelCache):
        # commits each finished batch as usual; once 16 labels are committed it says so and holds
        # this driver where it is, mid-run: the test kills it then, however fast the machine is
        def put_many(self, items, teacher_id=""):
            super().put_many(items, teacher_id)
            if len(self) >= 16:
                print(f"COMMITTED {len(self)}", flush=True)
                threading.Event().wait()

    cache_path, address = sys.argv[1], sys.argv[2]
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    texts = [d.full_text for d in list(load_retrieval("scifact").corpus.values())[:120]]
    teacher = {"backend": "sentence_transformer", "model": "minilm-l6", "batch_size": 8, "max_length": 64}
    run_labelling(SignallingCache(cache_path), teacher, "embed", texts, LaunchSettings("ray", num_workers=2, batch_size=8))
    print("FINISHED")
    """
)


def test_killed_ray_run_resumes_and_labels_only_the_missing_items(runtime, passages, tmp_path):
    script, path = tmp_path / "label.py", tmp_path / "labels.sqlite"
    script.write_text(KILLED_RUN)
    p = subprocess.Popen([sys.executable, str(script), str(path), runtime], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    # the child's signal: it has committed 16 labels and holds (no deadline: the suite's timeout is the guard)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith(("COMMITTED", "FINISHED")):
            break
    os.killpg(p.pid, signal.SIGKILL)  # the driver dies mid-run; its Ray job and actors go with it
    p.communicate()
    assert seen and seen[-1].startswith("COMMITTED"), f"the child ended without committing 16 labels: {seen[-5:]}"
    committed = len(LabelCache(path))
    assert 16 <= committed < len(passages)
    first = _created(path)
    (tid,) = _teacher_ids(path)

    cache = LabelCache(path)
    rerun = run_labelling(cache, TEACHER, "embed", passages, LaunchSettings("ray", num_workers=2, batch_size=8), teacher_id=tid)
    assert (rerun.cached, rerun.labelled) == (committed, len(passages) - committed)
    assert len(cache) == len(passages)  # nothing lost
    after = _created(path)
    assert {k: after[k] for k in first} == first  # rows of the killed run were kept, not rewritten
    assert len(set(after) - set(first)) == len(passages) - committed
    assert tid.startswith("st:minilm-l6") and {label_key(tid, "", t) for t in passages} == set(after)


def test_launcher_settings_and_shards(make_cfg, tmp_path):
    cfg = make_cfg("embedder", ["run.launcher=ray", "ray.num_workers=3", "ray.address=auto"])
    s = launch_settings(cfg)
    assert (s.launcher, s.num_workers, s.address) == ("ray", 3, "auto")
    with pytest.raises(RagdistillError, match=r"run\.launcher='slurm' is unknown"):
        launch_settings("slurm")
    with pytest.raises(RagdistillError, match=r"launcher=shards needs run\.shard=i/n"):
        label_with_teacher(LabelCache(tmp_path / "c.sqlite"), TEACHER, "embed", ["x"], "shards")
    with pytest.raises(RagdistillError, match="capability 'rank'"):
        label_with_teacher(LabelCache(tmp_path / "c.sqlite"), TEACHER, "rank", ["x"])
    gen = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(RagdistillError, match="can embed"):
        label_with_teacher(LabelCache(tmp_path / "c.sqlite"), gen, "embed", ["x"])
    texts = [f"claim number {i}" for i in range(12)]
    shard = LabelCache(tmp_path / "c.sqlite", shard=Shard(0, 2))
    run = run_labelling(shard, TEACHER, "embed", texts, "shards")
    owned = [lbl is not None for lbl in run.labels]
    assert 0 < sum(owned) < 12 and run.labelled == sum(owned) == len(shard)


def test_stage_teach_runs_on_ray_and_matches_the_local_run(runtime, tmp_path):
    """``ragdistill embedder teach run.launcher=ray``: the stage's teacher labels come from Ray
    workers, and the artifacts equal those of a local run (same teacher id, same vectors)."""
    from ragdistill.common.config import compose
    from ragdistill.embedder import stage

    small = ["run.report_to=[]", "teacher.model=minilm-l6", "teacher.max_length=32", "data.max_queries=4", "data.max_docs=16", "teacher.batch_size=8"]
    local = stage.teach(compose("embedder", [*small, f"paths.work_dir={tmp_path / 'local'}"]))
    on_ray = stage.teach(compose("embedder", [*small, f"paths.work_dir={tmp_path / 'ray'}", "run.launcher=ray", "ray.num_workers=2"]))
    assert on_ray.details["teacher_id"] == local.details["teacher_id"] and on_ray.details["n_docs"] == local.details["n_docs"] == 16
    # every text read or labelled once, on Ray as locally
    assert (on_ray.teacher_calls, on_ray.cached) == (local.teacher_calls, local.cached) and local.teacher_calls + local.cached == local.n_items
    with np.load(tmp_path / "local/embedder/teach/teacher_embeddings.npz") as a, np.load(tmp_path / "ray/embedder/teach/teacher_embeddings.npz") as b:
        assert list(a["doc_ids"]) == list(b["doc_ids"])
        assert np.allclose(a["doc_emb"], b["doc_emb"], atol=1e-5) and np.allclose(a["query_emb"], b["query_emb"], atol=1e-5)


TINY_GEN = ["teacher.model=smollm2-135m-instruct", "teacher.batch_size=2", "run.torch_threads=1", "ray.num_workers=1"]
GENERATOR = [*TINY_GEN, "teacher.max_new_tokens=8", "generator.teach.shipped_labels=[]", "generator.teach.max_train_questions=3",
             "generator.retrieval.top_k=1", "generator.prompt.max_context_chars=200", "generator.teach.filters.min_grounding=0.0"]
# sized so the suite's timeout is a guard: one short few-shot example and short histories keep the
# rewriter's prompts (6 human rewrites with 2 turns each by default) a fraction of their length
REWRITER = [*TINY_GEN, "query_rewriter.teach.shipped_labels=[]", "query_rewriter.teach.rewrite_records=2", "query_rewriter.teach.expansion_data=[scifact]",
            "query_rewriter.teach.expansion_queries=1", "query_rewriter.teach.rewrite_max_new_tokens=8", "query_rewriter.teach.expansion_max_new_tokens=8",
            "query_rewriter.teach.rewrite_shots=1", "query_rewriter.teach.max_turns=1", "query_rewriter.teach.max_answer_chars=80"]


def _rows(path):
    db = sqlite3.connect(path)
    rows = {k: (t, v) for k, t, v in db.execute("SELECT key, teacher, value FROM labels")}
    db.close()
    return rows


@pytest.mark.parametrize("stage", ["generator", "query_rewriter"])
def test_generation_stage_teach_labels_the_same_locally_and_on_ray(runtime, tmp_path, stage):
    """``ragdistill generator|query_rewriter teach run.launcher=ray``: the teacher (SmolLM2 standing in)
    answers on a Ray worker, which builds the rewriter's few-shot prompts itself (``prepare``), and the
    cache ends up with the same keys, teacher ids and replies as a local run."""
    from ragdistill.common.config import compose
    from ragdistill.common.stage import get_stage

    teach, small = get_stage(stage).teach, (GENERATOR if stage == "generator" else REWRITER)
    reports = {}
    for launcher in ("local", "ray"):
        cfg = compose(stage, [*small, f"paths.work_dir={tmp_path / launcher}", f"run.launcher={launcher}"])
        reports[launcher] = teach(cfg)
    labels = reports["ray"].details["teacher_labels"]
    if stage == "generator":
        assert labels == {"launcher": "ray", "cached": 0, "labelled": 3}
    else:
        assert labels == {"rewrite": {"launcher": "ray", "cached": 0, "labelled": 2}, "expansion": {"launcher": "ray", "cached": 0, "labelled": 1}}
    assert (reports["ray"].teacher_calls, reports["ray"].cached) == (reports["local"].teacher_calls, reports["local"].cached) == (3, 0)
    local, on_ray = _rows(tmp_path / "local/cache/labels.sqlite"), _rows(tmp_path / "ray/cache/labels.sqlite")
    assert len(local) == 3 and on_ray == local  # same keys, the stage's teacher id in the rows, the same greedy replies

    # a rerun on Ray finds every label cached: no Ray job, no teacher load
    again = teach(compose(stage, [*small, f"paths.work_dir={tmp_path / 'ray'}", "run.launcher=ray"]))
    assert (again.teacher_calls, again.cached) == (0, 3)
    assert all(r["labelled"] == 0 for r in ([again.details["teacher_labels"]] if stage == "generator" else again.details["teacher_labels"].values()))


def test_shipped_generation_labels_still_hit_with_the_demo_settings(tmp_path):
    """data/labels/{generator,query_rewriter}.jsonl were made before run_labelling: with conf/demo.yaml's
    settings every teach label is found under the same key (counted as cached, none relabelled, so no
    teacher is ever loaded), with the local launcher and with Ray (a fully cached Ray run starts no runtime)."""
    from omegaconf import OmegaConf

    from ragdistill.common.config import compose
    from ragdistill.common.paths import project_home
    from ragdistill.common.stage import get_stage

    demo = OmegaConf.load(project_home() / "conf/demo.yaml").overrides
    for launcher in ("local", "ray"):
        base = [f"paths.work_dir={tmp_path / launcher}", "run.report_to=[]", f"run.launcher={launcher}"]
        res = get_stage("query_rewriter").teach(compose("query_rewriter", [*base, *demo.query_rewriter]))
        assert res.details["teacher_labels"] == {"rewrite": {"launcher": launcher, "cached": 16, "labelled": 0},
                                                 "expansion": {"launcher": launcher, "cached": 2, "labelled": 0}}
        assert (res.teacher_calls, res.cached) == (0, 18)
        res = get_stage("generator").teach(compose("generator", [*base, *demo.generator]))
        assert res.details["teacher_labels"] == {"launcher": launcher, "cached": 64, "labelled": 0}
        assert (res.teacher_calls, res.cached) == (0, 64)

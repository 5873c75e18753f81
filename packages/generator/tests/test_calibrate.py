"""generator calibrate, the routed variant, the monitor baseline and the next round's queue fold, all
through the shared operations (``ragdistill.common.ops``) on the stage's hooks, with real models: the
SmolLM2-135M student (here undistilled, linked where ``train`` keeps the distilled student) against
the packaged Qwen2.5-0.5B teacher, whose answers to the held-out questions ship in
``data/labels/generator-squad.jsonl.gz`` (no teacher load)."""

from __future__ import annotations

import json

import pytest

from ragdistill.common.answer_metrics import rouge_l
from ragdistill.common.cache import LabelCache, label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.common.models import resolve_model
from ragdistill.common.ops.failure_queue import load_queue
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.generator import stage
from ragdistill.generator.teachers import ANSWER_TEMPLATE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def student_dir(link_student):
    return link_student("generator", "smollm2-135m-instruct")


def test_calibrate_on_held_out_questions_route_and_fold_the_queue(make_cfg, work_dir, student_dir):
    from ragdistill.common.ops import routed

    # every held-out disagreement above 0 is queued, so the next round's fold has inputs
    cfg = make_cfg("generator", ["generator.evaluate.max_test_questions=2", "routing.max_teacher_fraction=0.5",
                                 "routing.queue_disagreement=0.0", "run.torch_threads=1"])
    verbs = stage_verbs(stage)
    out = verbs["calibrate"](cfg)
    assert out["n"] == 2 and out["signal"] == "mean_logprob" and out["quality_metric"] == "token_f1"
    assert out["teacher_fraction"] <= 0.5 and out["target_met"]
    assert out["quality"] >= out["student_quality"]  # k=0 is always allowed: routing never loses quality in-sample
    d = json.loads((work_dir / "generator/calibrate/routing_curve.json").read_text())
    assert d["curve"][0]["fraction"] == 0.0 and d["curve"][-1]["fraction"] == 1.0
    items = read_jsonl(work_dir / "generator/calibrate/items.jsonl")

    # the same figures from the hooks directly: the student's replies and confidences, the cached teacher's
    records = stage.held_out(cfg)
    s_out, conf = stage.scorer(cfg, "mean_logprob")(records)
    t_out = stage.predictor(cfg, "teacher")(records)
    assert [i["id"] for i in items] == [r["id"] for r in records]
    assert [i["confidence"] for i in items] == pytest.approx(conf) and all(c < 0 for c in conf)  # mean log-probabilities
    assert [i["student_quality"] for i in items] == pytest.approx(stage.quality(cfg, records, s_out))
    assert [i["teacher_quality"] for i in items] == pytest.approx(stage.quality(cfg, records, t_out))
    disagreement = [1 - rouge_l(s.answer, [t.answer]) for s, t in zip(s_out, t_out, strict=True)]
    assert [i["disagreement"] for i in items] == pytest.approx(disagreement)

    # disagreements were queued as teach would label them: the conversation, keyed like the teacher's label
    tid = stage.teacher(cfg).teacher_id
    assert out["queued_inputs"] == sum(x > 0 for x in disagreement) >= 1
    recs = load_queue(work_dir / "generator/queue.jsonl")
    assert len(recs) == out["queued_inputs"] and all(r.teacher_id == tid and r.template == ANSWER_TEMPLATE for r in recs)
    assert all(r.input[-1]["role"] == "user" and "Question:" in r.input[-1]["content"] for r in recs)
    cache = LabelCache(cfg.paths.label_cache)
    assert all(cache.get_many([label_key(tid, ANSWER_TEMPLATE, r.input)]) for r in recs)
    cache.close()

    # the next round's teach folds the queue in: the teacher's replies come from the cache (shipped labels cover the train questions)
    taught = verbs["teach"](make_cfg("generator", ["generator.teach.max_train_questions=2", "data.extra=queue"]))
    q = taught.details["queue"]
    assert q["records"] == out["queued_inputs"] and q["teacher_labels"]["labelled"] == 0 and taught.teacher_calls == 0
    assert q["already_taught"] == q["other_template"] == 0 and q["kept"] + q["dropped_format"] == out["queued_inputs"]
    rows = read_jsonl(work_dir / "generator/teach/train.jsonl")
    assert len(rows) == taught.kept + q["kept"]
    assert all(r["messages"][:-1] in [x.input for x in recs] and r["messages"][-1]["role"] == "assistant" for r in rows[taught.kept:])
    again = verbs["teach"](make_cfg("generator", ["generator.teach.max_train_questions=2", "data.extra=queue"]))
    assert len(read_jsonl(work_dir / "generator/teach/train.jsonl")) == len(rows)  # teach rewrote train.jsonl: the queue joins it once
    assert again.details["queue"]["kept"] == q["kept"]

    # the routed component: the student answers; below the threshold the (cached) teacher does
    comp = routed(stage, cfg)
    r0 = records[0]
    answer = comp(r0["question"], r0["contexts"])
    st = comp.stats()
    c0 = comp.confidence(answer)  # the confidence the student gave this answer
    assert c0 == pytest.approx(conf[0], abs=1e-3)  # as calibrate measured it (there in a batch of two)
    to_teacher = c0 < d["threshold"]
    assert st["n_calls"] == 1 and st["threshold"] == d["threshold"] and st["n_teacher_calls"] == int(to_teacher)
    (alone,), _ = stage.scorer(cfg, "mean_logprob")([r0])
    assert answer == (t_out[0].answer if to_teacher else alone.answer)


def test_sample_agreement_and_min_logprob_signals(make_cfg, student_dir):
    from ragdistill.generator.prompts import conversation
    from ragdistill.generator.students import ScoredStudent

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
    with pytest.raises(RagdistillError, match=r"routing.signal='margin': the generator routes on mean_logprob, min_logprob, sample_agreement"):
        stage_verbs(stage)["calibrate"](make_cfg("generator", ["routing.signal=margin"]))


def test_monitor_baseline_from_held_out_questions(make_cfg, work_dir, student_dir):
    from ragdistill.common.ops import write_monitor_baseline

    cfg = make_cfg("generator", ["monitor.baseline_inputs=1", "run.torch_threads=1"])
    base = write_monitor_baseline(stage, cfg)
    saved = read_json(work_dir / "generator/export/monitor_baseline.json")
    assert saved["stage"] == "generator" and saved["metrics"]["n"] == 1 == base["metrics"]["n"]
    # the student's answer against the teacher's cached one, on the first held-out question
    rec = stage.held_out(cfg, 1)
    s, t = stage.predictor(cfg, "student")(rec)[0], stage.predictor(cfg, "teacher")(rec)[0]
    assert saved["metrics"]["rouge_l_agreement"] == pytest.approx(rouge_l(s.answer, [t.answer]))
    assert saved["divergence"] == pytest.approx(1 - saved["metrics"]["rouge_l_agreement"])
    # a logged answer is the student's output as is (not generated again)
    logged = stage.divergence_metrics(rec, [t.answer], [t])
    assert (logged["divergence"], logged["rouge_l_agreement"]) == (0.0, 1.0)
    assert write_monitor_baseline(stage, make_cfg("generator", ["monitor.baseline_inputs=0"])) is None


def _other_vocab_lm(path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_speculative_decoding_command(make_cfg, student_dir):
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

"""Routing: signals (hand-computed), calibration (hand-computed curve), config errors, the routed
component, and a real calibration routing SciFact queries between MiniLM (student) and MPNet (teacher)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.ops.router import RoutedComponent
from ragdistill.common.ops.routing import (
    RoutingTarget,
    calibrate,
    evaluate_threshold,
    load_calibration,
    write_calibration,
)
from ragdistill.common.signals import (
    margin,
    mean_logprob,
    min_logprob,
    neg_entropy,
    sample_agreement,
    top_score,
)


def test_signals_hand_computed():
    assert margin([0.2, 0.9, 0.5]) == pytest.approx(0.4)
    assert margin([3.0]) == math.inf
    assert neg_entropy([1.0, 1.0]) == pytest.approx(-math.log(2))
    # softmax([0, ln 3]) = (1/4, 3/4): entropy = -(1/4 ln 1/4 + 3/4 ln 3/4)
    assert neg_entropy([0.0, math.log(3)]) == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert neg_entropy([0.0, 0.5], temperature=0.5) == pytest.approx(neg_entropy([0.0, 1.0]))
    assert top_score([0.1, -2, 0.7]) == pytest.approx(0.7)
    assert mean_logprob([-1.0, -3.0]) == pytest.approx(-2.0) and min_logprob([-1.0, -3.0]) == -3.0
    assert mean_logprob([]) == -math.inf
    assert sample_agreement("Paris is in France", "paris is in france.") == pytest.approx(1.0)
    # token F1 after SQuAD normalisation: [cat, sat] vs [cat, sat, down]: P=1, R=2/3, F1=0.8
    assert sample_agreement("the cat sat", "cat sat down", metric="token_f1") == pytest.approx(0.8)
    with pytest.raises(RagdistillError, match="margin: no candidate scores"):
        margin([])


def test_calibrate_hand_computed_curve_and_targets(tmp_path):
    conf, sq, tq = [0.4, 0.1, 0.3, 0.2], [1, 0, 1, 0], [1, 1, 1, 1]
    cal = calibrate(conf, sq, tq, RoutingTarget(max_teacher_fraction=0.5), "toy")
    # least confident first: 0.1 (student 0), 0.2 (0), 0.3 (1), 0.4 (1)
    assert [(p["fraction"], p["quality"]) for p in cal.curve] == [(0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0)]
    assert [p["random_quality"] for p in cal.curve] == [0.5, 0.625, 0.75, 0.875, 1.0]
    assert cal.threshold == pytest.approx(0.25) and cal.teacher_fraction == 0.5 and cal.quality == 1.0
    assert cal.random_quality == 0.75 and cal.retention == 1.0 and cal.target_met
    # quality target: the fewest calls reaching 75% of the teacher
    cal = calibrate(conf, sq, tq, RoutingTarget(None, 0.75))
    assert cal.teacher_fraction == 0.25 and cal.threshold == pytest.approx(0.15)
    # unreachable within the budget: best within it, flagged
    cal = calibrate(conf, sq, tq, RoutingTarget(0.3, 0.99))
    assert not cal.target_met and cal.teacher_fraction == 0.25
    # tied confidences cannot be split: with a 30% budget nothing can be routed
    cal = calibrate([0.1, 0.1, 0.3, 0.4], sq, tq, RoutingTarget(0.3))
    assert cal.teacher_fraction == 0.0 and cal.quality == 0.5
    out = write_calibration(tmp_path, calibrate(conf, sq, tq, RoutingTarget(0.5), "toy"))
    assert json.loads(out.read_text())["threshold"] == pytest.approx(0.25)
    assert (tmp_path / "routing_curve.png").stat().st_size > 5000
    assert load_calibration(tmp_path).curve[2]["quality"] == 1.0
    e = evaluate_threshold([0.05, 0.5], [0, 1], [1, 0], 0.25)
    assert e == {"fraction": 0.5, "quality": 1.0, "random_quality": 0.5, "student_quality": 0.5, "teacher_quality": 0.5}


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_budget_outside_unit_interval_is_a_config_error(bad):
    with pytest.raises(RagdistillError, match=rf"routing.max_teacher_fraction={bad} is outside \(0, 1\)"):
        RoutingTarget.from_config({"max_teacher_fraction": bad, "min_retention": None})


def test_budget_error_through_a_stage_config(make_cfg, work_dir):
    from ragdistill.common.ops.routing import run_calibration

    cfg = make_cfg("embedder", ["routing.max_teacher_fraction=1.5"])
    with pytest.raises(RagdistillError, match=r"routing.max_teacher_fraction=1.5 is outside \(0, 1\)"):
        run_calibration(cfg, "embedder", [0.1, 0.2], [0, 1], [1, 1], "margin")
    with pytest.raises(RagdistillError, match="max_teacher_fraction"):
        make_cfg("embedder", ["routing.max_teacher_fraction=abc"])  # typed: not a float
    cfg = make_cfg("embedder", ["+routing=retention98"])
    assert cfg.routing.min_retention == 0.98 and cfg.routing.max_teacher_fraction == 0.5
    cal = run_calibration(cfg, "embedder", [0.4, 0.1, 0.3, 0.2], [1, 0, 1, 0], [1, 1, 1, 1], "margin")
    assert cal.teacher_fraction == 0.5 and (work_dir / "embedder" / "calibrate" / "routing_curve.png").exists()


def test_routed_component_counts_and_queues(tmp_path):
    from ragdistill.common.ops.failure_queue import FailureQueue, load_queue
    from ragdistill.common.ops.router import queue_on_teacher

    def student(query, docs):
        return [float(len(set(query.split()) & set(d.split()))) for d in docs]

    def teacher(query, docs):
        return [float(-abs(len(d) - len(query))) for d in docs]

    q = FailureQueue(tmp_path / "queue.jsonl")
    routed = RoutedComponent(student, teacher, lambda out, query, docs: margin(out), threshold=0.5, signal="margin",
                             on_teacher=queue_on_teacher(q, "toy-teacher", lambda query, docs: {"query": query, "docs": docs}))
    docs = ["a b c", "a b", "x y"]
    assert routed("a b c", docs) == [3.0, 2.0, 0.0]  # margin 1: the student keeps it
    assert routed("z", docs) == teacher("z", docs)  # margin 0: the teacher answers
    routed("z", docs)
    s = routed.stats()
    assert (s["n_calls"], s["n_teacher_calls"]) == (3, 2) and s["teacher_fraction"] == pytest.approx(2 / 3)
    recs = load_queue(tmp_path / "queue.jsonl")
    assert len(recs) == 1 and recs[0].input == {"query": "z", "docs": docs} and recs[0].reason == "routed"
    assert recs[0].teacher_output == teacher("z", docs) and recs[0].score == 0.0


# ---- real: SciFact held-out queries routed between two real bi-encoders


def _scifact_slice(n_queries: int, n_other: int, seed: int = 0):
    from ragdistill.common.data import load_retrieval

    data = load_retrieval("scifact")
    queries, qrels = data.split("test")
    qids = sorted(queries)[:n_queries]
    rel = sorted({d for q in qids for d in qrels[q]})
    others = sorted(set(data.corpus) - set(rel))
    np.random.default_rng(seed).shuffle(others)
    dids = rel + others[:n_other]
    return qids, [queries[q] for q in qids], {q: qrels[q] for q in qids}, dids, [data.corpus[d].full_text for d in dids]


def _per_query_ndcg(model_name, qtexts, dtexts, qids, dids, qrels):
    import pytrec_eval
    from sentence_transformers import SentenceTransformer

    from ragdistill.common.models import resolve_model

    m = SentenceTransformer(resolve_model(model_name), device="cpu")
    m.max_seq_length = 128
    q = m.encode(qtexts, normalize_embeddings=True, batch_size=32)
    d = m.encode(dtexts, normalize_embeddings=True, batch_size=32)
    s = q @ d.T
    run = {qid: {dids[j]: float(s[i, j]) for j in np.argsort(-s[i])[:100]} for i, qid in enumerate(qids)}
    per = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return np.array([per[q]["ndcg_cut_10"] for q in qids]), s


def test_real_routing_minilm_to_mpnet_on_scifact(tmp_path):
    """Student MiniLM-L6, teacher MPNet; quality = per-query NDCG@10; signal = the student's
    top-1 minus top-2 cosine. 100 held-out queries, their relevant docs + 100 others."""
    qids, qtexts, qrels, dids, dtexts = _scifact_slice(100, 100)
    sq, s_scores = _per_query_ndcg("minilm-l6", qtexts, dtexts, qids, dids, qrels)
    tq, _ = _per_query_ndcg("mpnet", qtexts, dtexts, qids, dids, qrels)
    conf = np.array([margin(row) for row in s_scores])
    budget = 0.2
    cal = calibrate(conf, sq, tq, RoutingTarget(budget), "margin")
    write_calibration(tmp_path, cal)
    print(f"student {sq.mean():.4f} teacher {tq.mean():.4f} routed {cal.quality:.4f} at {cal.teacher_fraction:.2f} "
          f"(random {cal.random_quality:.4f}); curve-vs-random area {cal.gain_over_random_auc:+.4f}")
    assert tq.mean() > sq.mean()  # on this slice the teacher is better (by ~0.02 NDCG@10)
    assert 0 < cal.teacher_fraction <= budget
    assert cal.quality > sq.mean()  # routing helps the student
    assert cal.quality > cal.random_quality  # and beats random routing at the same fraction
    assert cal.gain_over_random_auc > 0  # the whole curve lies above random on average (no threshold fitted)
    # routed quality lies between student and teacher, or above the teacher: where the student is
    # sure it is often right where the teacher is not (kept honest: within 0.03 of the teacher)
    assert cal.quality <= tq.mean() + 0.03
    # the threshold transfers: fit on half the queries, the other half routes about the budget
    a, b = np.arange(0, 100, 2), np.arange(1, 100, 2)
    half = calibrate(conf[a], sq[a], tq[a], RoutingTarget(budget), "margin")
    held = evaluate_threshold(conf[b], sq[b], tq[b], half.threshold)
    assert held["fraction"] <= budget + 0.1
    assert (tmp_path / "routing_curve.png").exists()


def test_generation_logprobs_match_teacher_forced_sequence_logprob():
    """mean/min token log-prob from generate(output_scores) equal a teacher-forced forward pass (SmolLM2-135M)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragdistill.common.models import resolve_model
    from ragdistill.common.signals import generation_logprobs, sequence_logprob

    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in ("What is the capital of France? One word.", "Name a colour.")]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True,
                             pad_token_id=tok.pad_token_id)
    lps = generation_logprobs(model, out)
    assert len(lps) == 2 and all(0 < len(lp) <= 6 and (lp <= 0).all() for lp in lps)
    gen = out.sequences[:, enc["input_ids"].shape[1]:]
    completions = [tok.decode(g[: len(lp)], skip_special_tokens=False) for g, lp in zip(gen, lps, strict=True)]
    for c, g, lp in zip(completions, gen, lps, strict=True):
        assert tok(c, add_special_tokens=False)["input_ids"] == g[: len(lp)].tolist()  # the round trip keeps the tokens
    forced = sequence_logprob(model, tok, prompts, completions, mean=True)
    assert forced == pytest.approx([mean_logprob(lp) for lp in lps], abs=2e-3)
    total = sequence_logprob(model, tok, prompts, completions, mean=False)
    assert total == pytest.approx([float(lp.sum()) for lp in lps], abs=1e-2)
    assert all(min_logprob(lp) <= mean_logprob(lp) for lp in lps)

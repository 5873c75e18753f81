"""Ranking metrics (pytrec_eval) against values computed by hand, and the timing helpers."""

from __future__ import annotations

import math

import pytest

from ragdistill.common.metrics import evaluate_run
from ragdistill.common.timing import measure, stats_from_latencies


def test_metrics_match_hand_computed_values():
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"z": 1}}
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 2.0, "z": 1.0}}
    m = evaluate_run(qrels, run, ["ndcg@10", "mrr@10", "recall@1", "map@100", "ndcg@2"])
    # q1: rel at ranks 1 and 3 -> DCG = 1 + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3)
    ndcg_q1 = 1.5 / (1 + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(3)) / 1.0  # rel at rank 2
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-6)
    assert m["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert m["recall@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["map@100"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert m["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2, abs=1e-6)


def test_mrr_cut_off_and_missing_queries():
    qrels = {"q1": {"d": 1}, "q2": {"d": 1}}
    run = {"q1": {f"x{i}": 100.0 - i for i in range(10)} | {"d": 1.0}}  # relevant at rank 11
    m = evaluate_run(qrels, run, ["mrr@10", "mrr@100"])
    assert m["mrr@10"] == 0.0  # beyond the cut-off
    assert m["mrr@100"] == pytest.approx((1 / 11) / 2)  # q2 has no run: scores 0


def test_unknown_metric_is_a_clear_error():
    from ragdistill.common.errors import RagdistillError

    with pytest.raises(RagdistillError, match="unknown metric 'ndgc@10'"):
        evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, ["ndgc@10"])


def test_latency_stats():
    s = stats_from_latencies([0.01] * 19 + [0.1], n_items=40, total_s=0.29)
    assert s.p50_ms == pytest.approx(10.0)
    assert s.p95_ms == pytest.approx(14.5)  # numpy linear interpolation between 10 ms and 100 ms
    assert s.items_per_s == pytest.approx(40 / 0.29)
    calls = []
    st = measure(lambda b: calls.append(len(b)), list(range(10)), batch_size=4, warmup=1)
    assert calls == [4, 4, 4, 2] and st.n_items == 10 and st.n_calls == 3


def test_answer_metrics_hand_computed():
    from ragdistill.common.answer_metrics import exact_match, grounding, normalize_answer, token_f1

    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the Eiffel tower", ["Eiffel Tower", "x"]) == 1.0
    # pred tokens {eiffel, tower, paris}, gold {eiffel, tower}: P = 2/3, R = 1 -> F1 = 0.8
    assert token_f1("Eiffel Tower Paris", ["The Eiffel Tower"]) == pytest.approx(0.8)
    assert token_f1("nothing", ["Eiffel"]) == 0.0
    # content tokens: built, 1889 (both in context), paris (not) -> 2/3
    assert grounding("built in 1889 in Paris", ["The tower was built in 1889."]) == pytest.approx(2 / 3)

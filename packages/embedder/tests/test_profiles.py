"""Score profiles (what routing, calibrate and the monitor compare) on hand-built embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.signals import margin, top_score
from ragdistill.embedder.profiles import ScoreProfile, disagreement, divergence, ndcg_at_10, profiles, unit_rows

DOC_IDS = [f"d{i}" for i in range(12)]


def test_profiles_score_unit_vectors_and_carry_the_query_embedding():
    docs = unit_rows(np.eye(12, dtype=np.float32)[:, :3] + 0.1)
    queries = np.array([[2.0, 0.0, 0.0]], dtype=np.float32)  # not unit length: scored as its direction
    (p,) = profiles(queries, docs, DOC_IDS)
    assert isinstance(p, ScoreProfile) and p.shape == (12,) and list(p.doc_ids) == DOC_IDS
    assert np.array_equal(p.query, queries[0])  # as the encoder (or the label cache) gave it: queued as is
    assert float(p[0]) == pytest.approx(1.1 / math.sqrt(1.1**2 + 0.02))
    assert margin(p) == pytest.approx(float(p[0]) - 0.1 / math.sqrt(0.03))  # the best document, then the flat ones
    assert top_score(p) == pytest.approx(float(p[0]))


def test_ndcg_at_10_per_record_as_pytrec_eval_scores_the_ranking():
    first = ScoreProfile(np.linspace(1, 0, 12), None, DOC_IDS)  # d0 ranked first
    second = ScoreProfile(np.linspace(1, 0, 12), None, DOC_IDS)
    records = [{"id": "a", "query": "x", "relevant": {"d0": 1}}, {"id": "b", "query": "y", "relevant": {"d1": 1}},
               {"id": "c", "query": "z", "relevant": {"d11": 1}}]
    q = ndcg_at_10(records, [first, second, second])
    assert q[0] == pytest.approx(1.0) and q[1] == pytest.approx(1 / math.log2(3)) and q[2] == 0.0  # d11 is 12th: beyond 10
    with pytest.raises(RagdistillError, match="has no 'relevant' judgments"):
        ndcg_at_10([{"id": "live", "query": "x"}], [first])


def test_disagreement_is_one_minus_the_profile_correlation_in_the_unit_interval():
    s = np.array([0.9, 0.5, 0.1, 0.3], dtype=np.float32)
    assert disagreement(s, 2 * s + 1) == pytest.approx(0.0, abs=1e-6)  # same ranking shape, other scale: no disagreement
    assert disagreement(s, -s) == 1.0  # anti-correlated (1 - (-1) = 2) is clipped to 1
    t = np.array([0.5, 0.9, 0.1, 0.3], dtype=np.float32)
    corr = np.corrcoef(s, t)[0, 1]
    assert disagreement(s, t) == pytest.approx(1 - corr, abs=1e-6)


def test_divergence_reports_correlation_overlap_and_cosine_in_one_space():
    rng = np.random.default_rng(0)
    docs = unit_rows(rng.normal(size=(12, 4)).astype(np.float32))
    q = rng.normal(size=(3, 4)).astype(np.float32)
    same = divergence(profiles(q, docs, DOC_IDS), profiles(q, docs, DOC_IDS))
    assert same["divergence"] == pytest.approx(0.0, abs=1e-6) and same["top10_overlap"] == 1.0 and same["cosine"] == pytest.approx(1.0)
    other = profiles(-q, docs, DOC_IDS)  # the reversed ranking: anti-correlated, 8 of the top 10 still shared of 12
    d = divergence(profiles(q, docs, DOC_IDS), other)
    assert d["score_profile_corr"] == pytest.approx(-1.0, abs=1e-6) and d["divergence"] == pytest.approx(2.0, abs=1e-6)
    assert d["top10_overlap"] == pytest.approx(8 / 10) and d["cosine"] == pytest.approx(-1.0)
    wide = profiles(np.concatenate([q, q], axis=1), unit_rows(np.concatenate([docs, docs], axis=1)), DOC_IDS)
    assert "cosine" not in divergence(profiles(q, docs, DOC_IDS), wide)  # 4 vs 8 dims: no shared space
    with pytest.raises(RagdistillError, match="has 5 documents, need at least k=10"):
        divergence(profiles(q, docs[:5], DOC_IDS[:5]), profiles(q, docs[:5], DOC_IDS[:5]))

"""Ensemble teachers: real MiniLM + MPNet as one embedding teacher (widths 384 + 768), weighted
scoring and consensus generation (hand-computed), config errors that name the member."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from ragdistill.common.config import TeacherConfig
from ragdistill.common.errors import RagdistillError
from ragdistill.common.paths import conf_dir
from ragdistill.common.teachers import EmbeddingTeacher, GenerationTeacher, ScoringTeacher, build_teacher, require
from ragdistill.common.teachers.ensemble import make_ensemble


def _teacher_cfg(name: str, **overrides):
    raw = OmegaConf.load(conf_dir() / "teacher" / f"{name}.yaml")
    raw.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(TeacherConfig), raw, overrides)


def test_ensemble_of_the_two_packaged_embedders_for_real():
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.metrics import evaluate_run

    cfg = _teacher_cfg("ensemble-embedders")
    ens = build_teacher(cfg)
    require(ens, EmbeddingTeacher, "embedder")
    # bi-encoders also score pairs (cosine), so the ensemble can serve as a reranker teacher too
    require(ens, ScoringTeacher, "reranker")
    assert ens.dim == 384 + 768 and ens.teacher_id.startswith("ens:") and "mpnet" in ens.teacher_id
    (mini, w1), (_, w2) = ens.members
    assert (w1, w2) == (0.5, 0.5)

    data = load_retrieval("scifact", max_queries=30, max_docs=60)
    queries, qrels = data.split("test")
    qids, dids = list(queries), list(data.corpus)
    for m, _ in ens.members:
        m.model.max_seq_length = 128  # keep the test small
    qv, dv = ens.embed([queries[q] for q in qids]), ens.embed([data.corpus[d].full_text for d in dids])
    assert qv.shape == (len(qids), 1152) and np.allclose(np.linalg.norm(dv, axis=1), 1.0, atol=1e-5)
    # each member's normalised vector, scaled by sqrt(weight), then concatenated (checked on a few texts) ...
    few = [queries[q] for q in qids[:4]]
    parts = [np.sqrt(0.5) * m.embed(few) for m, _ in ens.members]
    assert np.allclose(qv[:4], np.concatenate(parts, axis=1), atol=1e-5)
    # ... so the ensemble's dot product is the weighted mean of the members' cosines
    per = [(qv[:, :384] / np.sqrt(0.5), dv[:, :384] / np.sqrt(0.5)), (qv[:, 384:] / np.sqrt(0.5), dv[:, 384:] / np.sqrt(0.5))]
    assert np.allclose(qv @ dv.T, 0.5 * per[0][0] @ per[0][1].T + 0.5 * per[1][0] @ per[1][1].T, atol=1e-5)
    # and scoring pairs (each member's cosine, weighted) gives that same similarity
    pairs = [(queries[qids[i]], data.corpus[dids[j]].full_text) for i, j in ((0, 0), (1, 5), (2, 9))]
    assert np.allclose(ens.score(pairs), [qv[i] @ dv[j] for i, j in ((0, 0), (1, 5), (2, 9))], atol=1e-5)

    def ndcg(s):
        run = {q: {dids[j]: float(s[i, j]) for j in np.argsort(-s[i])[:100]} for i, q in enumerate(qids)}
        return evaluate_run(qrels, run, ("ndcg@10",))["ndcg@10"]

    n_ens, n_mini, n_mpnet = ndcg(qv @ dv.T), ndcg(per[0][0] @ per[0][1].T), ndcg(per[1][0] @ per[1][1].T)
    print(f"NDCG@10 minilm {n_mini:.4f} mpnet {n_mpnet:.4f} ensemble {n_ens:.4f}")
    assert n_ens >= min(n_mini, n_mpnet) - 1e-9  # averaging similarities never falls below the weaker member here

    with pytest.raises(RagdistillError, match=r"teacher.combine=mean needs members of one dimension.*use teacher.combine=concat"):
        make_ensemble(ens.members, "mean").embed(["a text"])
    same = make_ensemble([(mini, 1.0), (mini, 3.0)], "mean")  # one width: mean of normalised vectors
    assert np.allclose(same.embed(["a text"]), mini.embed(["a text"]), atol=1e-5)


class _Scorer:
    def __init__(self, name, fn):
        self.teacher_id, self.fn = name, fn

    def score(self, pairs):
        return [self.fn(q, d) for q, d in pairs]


class _Echo:
    def __init__(self, name, answer):
        self.teacher_id, self.answer = name, answer

    def generate(self, conversations, **overrides):
        return [self.answer for _ in conversations]


def test_scores_are_weighted_means_and_generation_takes_the_consensus():
    a = _Scorer("len", lambda q, d: float(len(d)))
    b = _Scorer("overlap", lambda q, d: float(len(set(q.split()) & set(d.split()))))
    ens = make_ensemble([(a, 1.0), (b, 3.0)])
    require(ens, ScoringTeacher, "reranker")
    assert not isinstance(ens, EmbeddingTeacher)
    # pair 1: len 5, overlap 2 -> 0.25*5 + 0.75*2 = 2.75 ; pair 2: len 3, overlap 0 -> 0.75
    assert ens.score([("a b", "a b c"), ("x", "y z")]) == pytest.approx([2.75, 0.75])
    gens = [_Echo("g1", "Paris is the capital"), _Echo("g2", "the capital is Paris"), _Echo("g3", "Lyon")]
    g = make_ensemble([(t, 1.0) for t in gens])
    require(g, GenerationTeacher, "generator")
    assert g.generate([[{"role": "user", "content": "capital of France?"}]]) == ["Paris is the capital"]
    with pytest.raises(RagdistillError, match="share no capability"):
        make_ensemble([(a, 1.0), (gens[0], 1.0)])


def test_ensemble_config_errors_name_the_member():
    with pytest.raises(RagdistillError, match=r"teacher.members\[1\]: .*modle"):
        build_teacher(_teacher_cfg("ensemble-embedders", members=[{"model": "minilm-l6"}, {"modle": "mpnet"}]))
    with pytest.raises(RagdistillError, match=r"needs teacher\.members"):
        build_teacher(_teacher_cfg("ensemble-embedders", members=[]))
    with pytest.raises(RagdistillError, match=r"teacher.combine='max': choose one of concat, mean"):
        make_ensemble([(_Scorer("a", lambda q, d: 0.0), 1.0)], "max")
    with pytest.raises(RagdistillError, match="weights must be > 0"):
        make_ensemble([(_Scorer("a", lambda q, d: 0.0), 0.0)])
    # the single-teacher configs still build as before
    assert build_teacher({"backend": "sentence_transformer", "model": "minilm-l6"}).teacher_id.startswith("st:minilm-l6")

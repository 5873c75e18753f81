"""Hard-negative mining and the faiss first-stage helper on hand-built embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from ragdistill.common.data import Document
from ragdistill.common.errors import RagdistillError
from ragdistill.embedder.mining import mine_hard_negatives
from ragdistill.embedder.retrieve import DenseIndex, search, truncate


def unit(*v):
    x = np.asarray(v, dtype=np.float32)
    return x / np.linalg.norm(x)


DOCS = ["pos", "near", "hard1", "hard2", "easy"]
DOC_EMB = np.stack([unit(1, 0, 0), unit(0.99, 0.14, 0), unit(0.8, 0.6, 0), unit(0.7, 0.71, 0), unit(0, 0, 1)])
Q_EMB = np.stack([unit(1, 0, 0)])


def test_mining_skips_positives_and_near_positives():
    triples = mine_hard_negatives(["q"], Q_EMB, DOCS, DOC_EMB, {"q": {"pos": 1}}, depth=5, negatives_per_query=2, margin=0.05)
    # "near" scores 0.99 > 1.0 - 0.05: a likely unjudged positive, dropped; the next two are kept in rank order
    assert [t.neg_id for t in triples] == ["hard1", "hard2"]
    assert all(t.pos_id == "pos" and t.pos_score == pytest.approx(1.0) for t in triples)
    assert triples[0].neg_score == pytest.approx(0.8, abs=1e-5)


def test_mining_margin_zero_keeps_near_and_skip_top():
    triples = mine_hard_negatives(["q"], Q_EMB, DOCS, DOC_EMB, {"q": {"pos": 1}}, depth=5, negatives_per_query=1, margin=0.0)
    assert [t.neg_id for t in triples] == ["near"]
    triples = mine_hard_negatives(["q"], Q_EMB, DOCS, DOC_EMB, {"q": {"pos": 1}}, depth=5, negatives_per_query=1, margin=0.0, skip_top=2)
    assert [t.neg_id for t in triples] == ["hard2"]


def test_search_and_matryoshka_truncation():
    run = search(DOC_EMB, DOCS, Q_EMB, ["q"], top_k=3)
    assert list(run["q"]) == ["pos", "near", "hard1"]
    assert run["q"]["hard1"] == pytest.approx(0.8, abs=1e-5)
    # truncated to 1 dim every doc with a positive first coordinate scores 1.0
    assert truncate(DOC_EMB, 1)[:, 0].tolist() == pytest.approx([1, 1, 1, 1, 0])


def test_dense_index_with_an_encoder_and_empty_corpus():
    vocab = {"alpha": unit(1, 0), "beta": unit(0, 1)}

    def encode(texts):
        return np.stack([vocab[x.split()[-1]] for x in texts])

    index = DenseIndex.build({"d1": Document("d1", "alpha"), "d2": Document("d2", "beta")}, encode)
    assert list(index.search_texts({"q": "about beta"}, top_k=1)["q"]) == ["d2"]
    with pytest.raises(RagdistillError, match="empty corpus"):
        DenseIndex.build({}, encode)

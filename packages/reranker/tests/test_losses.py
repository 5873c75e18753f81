"""The distillation losses against hand-computed values (and sentence-transformers' own MarginMSE)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from ragdistill.common.errors import RagdistillError
from ragdistill.reranker.losses import (
    ListwiseKLLoss,
    MarginMSELoss,
    ScoreMSELoss,
    WeightedSumLoss,
    build_loss,
    pad_lists,
    standardize_lists,
)

# two queries; the second list has 2 real candidates and one padding slot
STUDENT = torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.0, 99.0]])
TEACHER = torch.tensor([[2.0, 1.0, -1.0], [1.0, 0.0, -7.0]])
MASK = torch.tensor([[True, True, True], [True, True, False]])


def test_margin_mse_by_hand():
    # query 1: student margins (3-1, 3-0) = (2, 3); teacher (2-1, 2+1) = (1, 3) -> errors 1, 0
    # query 2: student margin 2-2 = 0; teacher 1-0 = 1 -> error 1; the padded slot is ignored
    assert MarginMSELoss(None).compute(STUDENT, TEACHER, MASK).item() == pytest.approx((1 + 0 + 1) / 3)


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [x / sum(e) for x in e]


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_listwise_kl_by_hand(t):
    q1 = _kl(_softmax([2 / t, 1 / t, -1 / t]), _softmax([3 / t, 1 / t, 0 / t]))
    q2 = _kl(_softmax([1 / t, 0 / t]), _softmax([2 / t, 2 / t]))  # padding excluded from both softmaxes
    expected = (q1 + q2) / 2 * t * t
    assert ListwiseKLLoss(None, temperature=t).compute(STUDENT, TEACHER, MASK).item() == pytest.approx(expected, rel=1e-5)


def test_listwise_kl_is_zero_for_shifted_scores():
    # KL only sees the distribution: a per-query constant shift costs nothing (MSE would)
    shifted = TEACHER + torch.tensor([[5.0], [-3.0]])
    assert ListwiseKLLoss(None).compute(shifted, TEACHER, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert ScoreMSELoss(None).compute(shifted, TEACHER, MASK).item() == pytest.approx((3 * 25 + 2 * 9) / 5)


def test_score_mse_by_hand():
    # (3-2)^2 + (1-1)^2 + (0+1)^2 + (2-1)^2 + (2-0)^2 = 1 + 0 + 1 + 1 + 4 over 5 real entries
    assert ScoreMSELoss(None).compute(STUDENT, TEACHER, MASK).item() == pytest.approx(7 / 5)


def test_weighted_sum_combines_parts():
    loss = WeightedSumLoss(None, [(MarginMSELoss(None), 0.5), (ListwiseKLLoss(None, 2.0), 2.0), (ScoreMSELoss(None), 0.0)])
    parts = loss.compute_parts(STUDENT, TEACHER, MASK)
    assert set(parts) == {"MarginMSELoss", "ListwiseKLLoss"}  # zero weight = off
    expected = 0.5 * (2 / 3) + 2.0 * ListwiseKLLoss(None, 2.0).compute(STUDENT, TEACHER, MASK).item()
    assert loss.compute(STUDENT, TEACHER, MASK).item() == pytest.approx(expected, rel=1e-6)


def test_pad_lists():
    m, mask = pad_lists([torch.tensor([1.0, 2.0]), torch.tensor([3.0])])
    assert m.tolist() == [[1.0, 2.0], [3.0, 0.0]] and mask.tolist() == [[True, True], [True, False]]


def test_standardize_lists_by_hand_and_scale_free():
    z = standardize_lists(TEACHER, MASK)
    # query 1: (2, 1, -1): mean 2/3, population std sqrt(14/9); query 2: (1, 0) -> (1, -1), padding stays 0
    s = math.sqrt(14 / 9)
    assert z[0].tolist() == pytest.approx([(2 - 2 / 3) / s, (1 - 2 / 3) / s, (-1 - 2 / 3) / s], rel=1e-5)
    assert z[1].tolist() == pytest.approx([1.0, -1.0, 0.0], abs=1e-6)
    # a teacher 50x narrower (a cosine-based hybrid) teaches exactly what a wide one does
    assert torch.allclose(standardize_lists(TEACHER * 0.02 + 0.9, MASK), z, atol=1e-5)


def test_teacher_norm_reaches_the_losses():
    cfg = {"margin_mse": 1, "listwise_kl": 0, "mse": 0, "temperature": 1.0}
    narrow = [torch.tensor([1.02, 1.0, 0.98]), torch.tensor([0.95, 0.94])]
    raw = build_loss(None, OmegaConf.create({**cfg, "teacher_norm": "none"}))
    normed = build_loss(None, OmegaConf.create({**cfg, "teacher_norm": "zscore"}))
    teacher_raw, mask = pad_lists(narrow)
    assert normed.teacher_norm == "zscore" and raw.teacher_norm == "none"
    assert torch.allclose(standardize_lists(teacher_raw, mask)[0], torch.tensor([1.2247, 0.0, -1.2247]), atol=1e-4)



def test_teacher_norm_is_a_choice_checked_when_the_config_is_composed():
    from ragdistill.common.config import compose

    loss = compose("reranker", ["reranker.train.loss.teacher_norm=none"]).reranker.train.loss
    assert build_loss(None, loss).teacher_norm == "none"  # the config's Enum reaches the loss as its name
    assert build_loss(None, compose("reranker").reranker.train.loss).teacher_norm == "zscore"  # the default
    with pytest.raises(RagdistillError, match=r"(?s)reranker.train.loss.teacher_norm=minmax.*expected one of \[zscore, none\]"):
        compose("reranker", ["reranker.train.loss.teacher_norm=minmax"])


def test_build_loss_rejects_bad_weights():
    with pytest.raises(RagdistillError, match=r"reranker.train.loss weights .* at least one > 0"):
        build_loss(None, OmegaConf.create({"margin_mse": 0, "listwise_kl": 0, "mse": 0, "temperature": 1.0}))
    with pytest.raises(RagdistillError, match="temperature=0"):
        build_loss(None, OmegaConf.create({"margin_mse": 1, "listwise_kl": 0, "mse": 0, "temperature": 0}))


def test_margin_mse_matches_sentence_transformers_on_triplets():
    """With lists of (pos, neg) ours is exactly sentence-transformers' MarginMSELoss."""
    from sentence_transformers.cross_encoder.losses import MarginMSELoss as STMarginMSE

    from ragdistill.reranker.students import new_cross_encoder

    ce = new_cross_encoder("minilm-l6", max_length=24)
    queries = ["who wrote hamlet", "boiling point of water"]
    pos = ["Hamlet is a tragedy by William Shakespeare.", "Water boils at 100 degrees Celsius at sea level."]
    neg = ["Paris is the capital of France.", "Ice is frozen water."]
    labels = torch.tensor([[4.0, -1.0], [3.0, 0.5]])
    ours = MarginMSELoss(ce)([queries, [[p, n] for p, n in zip(pos, neg, strict=True)]], list(labels))
    theirs = STMarginMSE(ce)([queries, pos, neg], labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)

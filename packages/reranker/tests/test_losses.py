"""The distillation losses against hand-computed values (and sentence-transformers' own MarginMSE)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from ragdistill.common.errors import RagdistillError
from ragdistill.reranker.losses import (
    LibraryListLoss,
    ListwiseKLLoss,
    MarginMSELoss,
    Part,
    PositiveCELoss,
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
    loss = WeightedSumLoss(None, [Part("a", MarginMSELoss(None), 0.5), Part("b", ListwiseKLLoss(None, 2.0), 2.0),
                                  Part("c", ScoreMSELoss(None), 0.0)])
    parts = loss.compute_parts(STUDENT, TEACHER, MASK)
    assert set(parts) == {"a", "b"}  # zero weight = off
    expected = 0.5 * (2 / 3) + 2.0 * ListwiseKLLoss(None, 2.0).compute(STUDENT, TEACHER, MASK).item()
    assert loss.compute(STUDENT, TEACHER, MASK).item() == pytest.approx(expected, rel=1e-6)


# judged relevance of the same lists: query 1's first document is its positive; query 2 is judged, its
# second document relevant; -1 = padding (and, for a whole row, an unjudged list)
JUDGED = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])


def _log_softmax(xs):
    return [x - math.log(sum(math.exp(y) for y in xs)) for x in xs]


def test_positive_ce_by_hand():
    # query 1: -log softmax(3, 1, 0)[0]; query 2: -log softmax(2, 2)[1] = log 2 (padding excluded)
    q1, q2 = -_log_softmax([3.0, 1.0, 0.0])[0], math.log(2)
    assert PositiveCELoss().compute(STUDENT, JUDGED, MASK).item() == pytest.approx((q1 + q2) / 2, rel=1e-6)
    # an unjudged row (all -1) is left out; two positives share the target mass
    unjudged = torch.tensor([[1.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    assert PositiveCELoss().compute(STUDENT, unjudged, MASK).item() == pytest.approx(q1, rel=1e-6)
    two = torch.tensor([[1.0, 1.0, 0.0]])
    lp = _log_softmax([3.0, 1.0, 0.0])
    assert PositiveCELoss().compute(STUDENT[:1], two, MASK[:1]).item() == pytest.approx(-(lp[0] + lp[1]) / 2, rel=1e-6)


def test_listnet_by_hand():
    # sentence-transformers' ListNet: cross-entropy between softmax(student) and softmax(binary labels)
    def q(s, y):
        t = [math.exp(v) / sum(math.exp(w) for w in y) for v in y]
        return -sum(ti * li for ti, li in zip(t, _log_softmax(s), strict=True))

    expected = (q([3.0, 1.0, 0.0], [1.0, 0.0, 0.0]) + q([2.0, 2.0], [0.0, 1.0])) / 2
    assert LibraryListLoss("listnet").compute(STUDENT, JUDGED, MASK).item() == pytest.approx(expected, rel=1e-5)


def test_combined_loss_by_hand():
    """w_kd * (MarginMSE + KL) + w_sup * CE on the positive, every part on the same student scores."""
    loss = build_loss(None, OmegaConf.create({"margin_mse": 1, "listwise_kl": 1, "mse": 0, "temperature": 1.0, "teacher_norm": "none",
                                              "kd_weight": 0.5, "supervised": "ce", "supervised_weight": 2.0}))
    parts = loss.compute_parts(STUDENT, TEACHER, MASK, JUDGED)
    assert set(parts) == {"kd_margin_mse", "kd_listwise_kl", "sup_ce"} and loss.supervised
    kl = (_kl(_softmax([2, 1, -1]), _softmax([3, 1, 0])) + _kl(_softmax([1, 0]), _softmax([2, 2]))) / 2
    ce = (-_log_softmax([3.0, 1.0, 0.0])[0] + math.log(2)) / 2
    assert parts["kd_margin_mse"].item() == pytest.approx(0.5 * 2 / 3, rel=1e-6)
    assert parts["kd_listwise_kl"].item() == pytest.approx(0.5 * kl, rel=1e-5)
    assert parts["sup_ce"].item() == pytest.approx(2.0 * ce, rel=1e-6)
    assert loss.compute(STUDENT, TEACHER, MASK, JUDGED).item() == pytest.approx(0.5 * (2 / 3 + kl) + 2.0 * ce, rel=1e-5)
    # labels only: no teacher term at all
    sup_only = build_loss(None, OmegaConf.create({"margin_mse": 1, "listwise_kl": 1, "mse": 0, "temperature": 1.0, "kd_weight": 0,
                                                  "supervised": "ce", "supervised_weight": 1.0}))
    assert set(sup_only.compute_parts(STUDENT, TEACHER, MASK, JUDGED)) == {"sup_ce"}


def test_one_column_carries_teacher_scores_and_judgments():
    """The dataset's label column [[t, y], ...] splits into the teacher's scores and the judgments."""
    lists = [[3.0, 1.0, 0.0], [2.0, 2.0]]
    loss = build_loss(_Fixed(lists), OmegaConf.create({"margin_mse": 1, "listwise_kl": 0, "mse": 0, "temperature": 1.0,
                                                       "teacher_norm": "none", "supervised": "ce", "supervised_weight": 1.0}))
    labels = [torch.tensor([[2.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    out = loss([["q1", "q2"], [["a", "b", "c"], ["d", "e"]]], labels)
    assert out["kd_margin_mse"].item() == pytest.approx(2 / 3, rel=1e-6)
    assert out["sup_ce"].item() == pytest.approx((-_log_softmax([3.0, 1.0, 0.0])[0] + math.log(2)) / 2, rel=1e-6)


class _Fixed:
    """A scorer with fixed scores per list (the losses' ``score_lists`` hook, as the ColBERT student has)."""

    def __init__(self, lists):
        self.lists = lists

    def score_lists(self, queries, docs_lists):
        return pad_lists([torch.tensor(v) for v in self.lists])


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
    with pytest.raises(RagdistillError, match=r"reranker.train.loss weights .* each must be >= 0 and some term > 0"):
        build_loss(None, OmegaConf.create({"margin_mse": 0, "listwise_kl": 0, "mse": 0, "temperature": 1.0}))
    with pytest.raises(RagdistillError, match=r"kd_weight=0.0, supervised_weight=0.0: each must be >= 0 and some term > 0"):
        build_loss(None, OmegaConf.create({"margin_mse": 1, "listwise_kl": 0, "mse": 0, "temperature": 1.0, "kd_weight": 0,
                                           "supervised_weight": 0}))
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


@pytest.fixture(scope="module")
def minilm_ce():
    from ragdistill.reranker.students import new_cross_encoder

    return new_cross_encoder("minilm-l6", max_length=24)


QUERIES = ["who wrote hamlet", "boiling point of water"]
DOCS = [["Hamlet is a tragedy by William Shakespeare.", "Paris is the capital of France.", "Macbeth is set in Scotland."],
        ["Ice is frozen water.", "Water boils at 100 degrees Celsius at sea level."]]
BINARY = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0])]


@pytest.mark.parametrize("name", ["lambdaloss", "listnet"])
def test_library_list_losses_are_sentence_transformers_own(minilm_ce, name):
    """Our supervised part runs the library's LambdaLoss / ListNetLoss on the scores the step already
    computed: the same value as the library computing the student's scores itself."""
    from sentence_transformers.cross_encoder import losses

    from ragdistill.reranker.losses.base import cross_encoder_list_scores

    theirs = {"lambdaloss": losses.LambdaLoss, "listnet": losses.ListNetLoss}[name](minilm_ce)([QUERIES, DOCS], BINARY)
    student, mask = cross_encoder_list_scores(minilm_ce, QUERIES, DOCS)
    judged, _ = pad_lists(BINARY, fill=-1.0)
    ours = LibraryListLoss(name).compute(student, judged, mask)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5) and ours.requires_grad


def test_positive_ce_is_sentence_transformers_mnrl_without_in_batch_negatives(minilm_ce):
    """CE on the positive = the library's cross-encoder MultipleNegativesRankingLoss with no in-batch
    negatives, scale 1 and no activation (equal-length lists, positive first)."""
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    from ragdistill.reranker.losses.base import cross_encoder_list_scores

    docs = [d[:2] for d in DOCS]
    docs[1] = docs[1][::-1]  # positive first in both lists
    student, mask = cross_encoder_list_scores(minilm_ce, QUERIES, docs)
    mnrl = MultipleNegativesRankingLoss(minilm_ce, num_negatives=0, scale=1.0, activation_fn=None)
    theirs = mnrl.calculate_loss([student[:, 0], student[:, 1]], batch_size=2)  # columns: positives, negatives
    ours = PositiveCELoss().compute(student, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), mask)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)

"""Loss values against hand-computed numbers (real student for construction, fixed embeddings)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ragdistill.embedder.losses import DistillationLoss, ProjectedMSELoss
from ragdistill.embedder.models import load_sentence_transformer


@pytest.fixture(scope="module")
def student():
    return load_sentence_transformer("minilm-l6", max_length=16)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_mse_without_projection_is_squared_l2_per_row(student):
    loss = ProjectedMSELoss(student)
    # row 1: ||[1,0]-[0,1]||^2 = 2, row 2: 0 -> mean 1.0 for this column; second column identical -> 1.0
    s, target = t([[1, 0], [0, 1]]), t([[0, 1], [0, 1]])
    assert loss.compute_loss_from_embeddings([s, s], [target, target]).item() == pytest.approx(1.0)


def test_mse_truncated_student_compares_to_renormalised_truncated_target(student):
    loss = ProjectedMSELoss(student)
    # a Matryoshka view of 1 dim: targets [0.6, 0.8] -> [1.0] and [-1, 0] -> [-1.0]; student [1], [1]
    value = loss.compute_loss_from_embeddings([t([[1], [1]])], [t([[0.6, 0.8], [-1.0, 0.0]])])
    assert value.item() == pytest.approx((0 + 4) / 2)


def test_projection_uses_first_columns_for_truncated_embeddings(student):
    loss = ProjectedMSELoss(student, projection_dim=2)
    with torch.no_grad():
        loss.projection.weight.zero_()
        loss.projection.bias.zero_()
        loss.projection.weight[0, 0] = 2.0  # P(s) = [2 * s0, 0]
    full = torch.zeros(1, 384)
    full[0, 0] = 1.0
    target = t([[0.0, 1.0]])
    # ||[2,0] - [0,1]||^2 = 5, at full size and truncated to 1 dim alike
    assert loss.compute_loss_from_embeddings([full], [target]).item() == pytest.approx(5.0)
    assert loss.compute_loss_from_embeddings([full[:, :1]], [target]).item() == pytest.approx(5.0)


def test_init_projection_recovers_a_linear_map(student):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(800, 384))
    a, c = rng.normal(size=(384, 8)), rng.normal(size=8)
    loss = ProjectedMSELoss(student, projection_dim=8)
    fit = loss.init_projection(s, s @ a + c, ridge=1e-8)
    assert fit < 1e-8
    assert np.allclose(loss.projection.weight.detach().numpy(), a.T, atol=1e-4)
    assert np.allclose(loss.projection.bias.detach().numpy(), c, atol=1e-4)


def test_distillation_loss_components_and_weights(student):
    loss = DistillationLoss(student, {"mse": 1.0, "mnrl": 1.0, "margin_mse": 2.0}, teacher_dim=2, mnrl_scale=1.0)
    q, p, n = t([[1, 0]]), t([[0.6, 0.8]]), t([[0, 1]])
    labels = torch.from_numpy(DistillationLoss.pack_labels(
        np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]), np.array([[1.0, 0.0]]), np.array([0.1])))
    total = loss.compute_loss_from_embeddings([q, p, n], labels).item()
    mse = (0 + 0 + 2) / 3  # only the negative misses its target: ||[0,1]-[1,0]||^2 = 2
    mnrl = math.log(1 + math.exp(-0.6))  # softmax over cos(q,p)=0.6, cos(q,n)=0 at scale 1
    margin = (0.6 - 0.0 - 0.1) ** 2
    assert loss.last == pytest.approx({"mse": mse, "mnrl": mnrl, "margin_mse": margin}, rel=1e-5)
    assert total == pytest.approx(mse + mnrl + 2.0 * margin, rel=1e-5)


def test_distillation_loss_rejects_bad_labels(student):
    loss = DistillationLoss(student, {"mse": 1.0}, teacher_dim=4)
    with pytest.raises(ValueError, match=r"\(batch, 13\)"):
        loss.compute_loss_from_embeddings([t([[1, 0]])] * 3, torch.zeros(1, 7))
    with pytest.raises(ValueError, match="weights must name"):
        DistillationLoss(student, {"kl": 1.0}, teacher_dim=4)


def test_text_mse_shares_the_projection_and_renormalises_a_truncated_target(student):
    from ragdistill.embedder.losses import TextMSELoss

    mse = ProjectedMSELoss(student)
    loss = TextMSELoss(student, mse, weight=2.0)
    # no projection: the target [0.6, 0.8] cut to 1 dim by MatryoshkaLoss is [0.6], renormalised to [1.0]
    assert loss.compute_loss_from_embeddings([t([[1.0]])], t([[0.6]])).item() == pytest.approx(0.0)
    # full width: ||[1,0] - [0.6,0.8]||^2 = 0.16 + 0.64, times the weight 2
    assert loss.compute_loss_from_embeddings([t([[1.0, 0.0]])], t([[0.6, 0.8]])).item() == pytest.approx(1.6)
    projected = ProjectedMSELoss(student, projection_dim=2)
    with torch.no_grad():
        projected.projection.weight.zero_()
        projected.projection.bias.zero_()
        projected.projection.weight[0, 0] = 2.0  # P(s) = [2 * s0, 0]
    text = TextMSELoss(student, projected)
    full = torch.zeros(1, 384)
    full[0, 0] = 1.0
    # the triples' projection maps the student; the target is compared as is: ||[2,0] - [0,3]||^2 = 13
    assert text.compute_loss_from_embeddings([full], t([[0.0, 3.0]])).item() == pytest.approx(13.0)
    assert text.mse is projected

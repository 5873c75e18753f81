"""Supervised ranking losses on the judged labels of each list (SQuAD's gold paragraph, BEIR qrels).

Distillation alone copies the teacher, mistakes included; the judged positive says which document
should rank first whatever the teacher thinks. Each loss here is a function of
``(student, judged, mask)`` on the student scores the teacher losses already computed, so adding
it to the weighted sum costs no second forward pass. Lists without judgments (``judged == -1``
throughout, e.g. lists folded in from the failure queue) are left out of the supervised part.

- :class:`PositiveCELoss`: cross-entropy of the softmax over the list on the judged positive(s)
  (ColBERT's and RocketQA's list loss). On equal-length lists with one positive first it is
  sentence-transformers' cross-encoder ``MultipleNegativesRankingLoss`` without in-batch
  negatives, scale 1 and no activation (a test checks this).
- :class:`LibraryListLoss`: sentence-transformers' own ``LambdaLoss`` (NDCG-Loss2++ weighting) or
  ``ListNetLoss`` on binary labels, run on the scores already computed: the library's code is
  handed a stand-in for the CrossEncoder that returns those scores instead of encoding again.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def judged_rows(judged: Tensor) -> Tensor:
    """Rows with a judgment (any label >= 0): the ones a supervised loss sees."""
    return (judged >= 0).any(-1)


class PositiveCELoss(nn.Module):
    """``mean over judged q of -sum_j p*_qj log softmax(s_q)_j``, ``p*`` uniform over the judged
    positives (``y > 0``) of the list: the positive should take the softmax mass of its list.

    Inputs:
        +-----------------------------------------+-----------------------------------------+
        | Inputs                                  | Labels                                  |
        +=========================================+=========================================+
        | (query, [doc_1, ..., doc_n])            | judged relevance [y_1, ..., y_n]        |
        +-----------------------------------------+-----------------------------------------+
    """

    name = "ce"

    def compute(self, student: Tensor, judged: Tensor, mask: Tensor) -> Tensor:
        rows = judged_rows(judged) & ((judged > 0) & mask).any(-1)
        if not rows.any():
            return (student * 0.0).sum()
        s, y, m = student[rows], judged[rows].clamp(min=0.0), mask[rows]
        log_p = torch.log_softmax(s.masked_fill(~m, torch.finfo(s.dtype).min), dim=-1)
        target = (y * m) / (y * m).sum(-1, keepdim=True)
        return -(target * log_p.masked_fill(~m, 0.0)).sum(-1).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {}


class _PrecomputedScores:
    """Stands in for the CrossEncoder inside a sentence-transformers list loss: ``preprocess`` has
    nothing to tokenise and the forward returns the scores this step already computed (in the
    order the loss pairs them: query-major, documents in list order)."""

    num_labels = 1

    def __init__(self, flat: Tensor) -> None:
        self.flat = flat
        self.device = flat.device

    def preprocess(self, pairs: list[Any], prompt: str | None = None, task: str | None = None) -> dict[str, Any]:
        if len(pairs) != len(self.flat):
            raise ValueError(f"expected {len(self.flat)} pairs, got {len(pairs)}")
        return {}

    def __call__(self, features: dict[str, Any]) -> dict[str, Tensor]:
        return {"scores": self.flat}


class LibraryListLoss(nn.Module):
    """A sentence-transformers cross-encoder list loss (``LambdaLoss``, ``ListNetLoss``) on the
    student scores and the judged labels of each judged list (binary: ``y > 0``)."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__()
        from sentence_transformers.cross_encoder import losses

        self.name = name
        self.cls = {"lambdaloss": losses.LambdaLoss, "listnet": losses.ListNetLoss}[name]
        self.kwargs = kwargs

    def compute(self, student: Tensor, judged: Tensor, mask: Tensor) -> Tensor:
        rows = judged_rows(judged)
        if not rows.any():
            return (student * 0.0).sum()
        s, y, m = student[rows], (judged[rows] > 0).float(), mask[rows]
        lengths = m.sum(-1).tolist()
        loss = self.cls(_PrecomputedScores(s[m]), activation_fn=nn.Identity(), mini_batch_size=-1, **self.kwargs)
        inputs = [[""] * len(lengths), [[""] * int(n) for n in lengths]]
        return loss(inputs, [y[i, : int(n)] for i, n in enumerate(lengths)])

    def get_config_dict(self) -> dict[str, Any]:
        return {"library_loss": self.cls.__name__, **self.kwargs}


SUPERVISED = ("ce", "lambdaloss", "listnet")


def supervised_loss(name: str) -> nn.Module:
    """The supervised part by name (``reranker.train.loss.supervised``)."""
    if name == "ce":
        return PositiveCELoss()
    if name in ("lambdaloss", "listnet"):
        return LibraryListLoss(name)
    raise ValueError(f"supervised loss {name!r}: choose one of {', '.join(SUPERVISED)}")

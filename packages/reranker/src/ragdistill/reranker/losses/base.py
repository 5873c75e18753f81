"""What the list-distillation losses share: student scores for each query's candidate list.

Inputs follow sentence-transformers' listwise convention: ``inputs = [queries, docs_lists]`` and
``labels = [teacher scores per list]`` (a ``(query, [doc_1..doc_n])`` row with ``[t_1..t_n]``).
The judged positive is ``doc_1``. A row's labels may also be ``[[t_1, y_1], ..., [t_n, y_n]]``:
the teacher's score and the judged relevance of each document (``y = -1`` where the list is not
judged, e.g. a list folded in from the failure queue), so one dataset column feeds both the
teacher losses and the supervised one. Lists may differ in length; scores become a padded
``(batch, max_n)`` matrix with a validity mask, so every loss is a function of
``(student, target, mask)`` that unit tests can check against hand-computed values.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.util import batch_to_device
from torch import Tensor, nn


def pad_lists(values: list[Tensor], fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Ragged 1-d tensors -> ``(batch, max_n)`` matrix and boolean mask of real entries."""
    n = max(len(v) for v in values)
    out = torch.full((len(values), n), fill, dtype=torch.float32, device=values[0].device)
    mask = torch.zeros((len(values), n), dtype=torch.bool, device=values[0].device)
    for i, v in enumerate(values):
        out[i, : len(v)] = v.float()
        mask[i, : len(v)] = True
    return out, mask


def cross_encoder_list_scores(model: Any, queries: list[str], docs_lists: list[list[str]], mini_batch_size: int = 0) -> tuple[Tensor, Tensor]:
    """Student logits of a ``CrossEncoder`` for every (query, doc) of every list, padded."""
    pairs = [(q, d) for q, docs in zip(queries, docs_lists, strict=True) for d in docs]
    step = mini_batch_size if mini_batch_size > 0 else len(pairs)
    logits = []
    for i in range(0, len(pairs), step):
        feats = batch_to_device(model.preprocess(pairs[i : i + step]), model.device)
        logits.append(model(feats)["scores"].view(-1))
    flat = torch.cat(logits)
    lists, start = [], 0
    for docs in docs_lists:
        lists.append(flat[start : start + len(docs)])
        start += len(docs)
    return pad_lists_differentiable(lists)


TEACHER_NORMS = ("zscore", "none")


def standardize_lists(scores: Tensor, mask: Tensor) -> Tensor:
    """Each row's valid entries -> zero mean, unit variance (padding stays 0).

    Teachers differ in scale: a cross-encoder's logits span ~10 within a list, a cosine-based
    teacher's ~0.2. Raw, the second makes softmax targets near uniform (KL teaches "all equal")
    and margins tiny (MarginMSE teaches noise); per-list z-scores keep the teacher's ranking and
    relative gaps whatever its scale."""
    m = mask.float()
    n = m.sum(1, keepdim=True).clamp(min=1.0)
    mean = (scores * m).sum(1, keepdim=True) / n
    var = (((scores - mean) * m) ** 2).sum(1, keepdim=True) / n
    return (scores - mean) / var.sqrt().clamp(min=1e-6) * m


def pad_lists_differentiable(values: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Like :func:`pad_lists` but keeps the autograd graph (no in-place writes into a leaf)."""
    n = max(len(v) for v in values)
    rows, masks = [], []
    for v in values:
        pad = n - len(v)
        rows.append(torch.cat([v.float(), v.new_zeros(pad)]) if pad else v.float())
        masks.append(torch.cat([torch.ones(len(v), dtype=torch.bool), torch.zeros(pad, dtype=torch.bool)]))
    return torch.stack(rows), torch.stack(masks).to(rows[0].device)


class ListDistillationLoss(nn.Module):
    """Base class: scores the lists with the student, then ``compute(student, teacher, mask)``.

    ``model`` is a ``sentence_transformers.CrossEncoder`` or any object with
    ``score_lists(queries, docs_lists) -> (scores, mask)`` (the ColBERT student).
    """

    def __init__(self, model: Any, mini_batch_size: int = 0, teacher_norm: str = "none") -> None:
        super().__init__()
        if teacher_norm not in TEACHER_NORMS:
            raise ValueError(f"teacher_norm={teacher_norm!r}: choose one of {', '.join(TEACHER_NORMS)}")
        self.model = model
        self.mini_batch_size = mini_batch_size
        self.teacher_norm = teacher_norm

    def student_scores(self, queries: list[str], docs_lists: list[list[str]]) -> tuple[Tensor, Tensor]:
        if hasattr(self.model, "score_lists"):
            return self.model.score_lists(queries, docs_lists)
        return cross_encoder_list_scores(self.model, queries, docs_lists, self.mini_batch_size)

    def forward(self, inputs: list[Any], labels: list[Tensor] | Tensor, **_: Any) -> Tensor:
        return self.compute(*self.prepare(inputs, labels))

    def prepare(self, inputs: list[Any], labels: list[Tensor] | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(student scores, teacher scores, mask), each ``(batch, max_list_len)``."""
        student, teacher, _, mask = self.prepare_all(inputs, labels)
        return student, teacher, mask

    def prepare_all(self, inputs: list[Any], labels: list[Tensor] | Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(student scores, teacher scores, judged relevance, mask), each ``(batch, max_list_len)``;
        judged relevance is -1 where a row carries none."""
        if len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects inputs (queries, docs_lists), got {len(inputs)} columns")
        queries, docs_lists = inputs
        if isinstance(labels, Tensor):
            labels = list(labels)
        if [len(d) for d in docs_lists] != [len(t) for t in labels]:
            raise ValueError("each query needs one teacher score per candidate document")
        student, mask = self.student_scores(queries, docs_lists)
        rows = [t.to(student.device).float() for t in labels]
        teacher, _ = pad_lists([r[:, 0] if r.dim() == 2 else r for r in rows])
        judged, _ = pad_lists([r[:, 1] if r.dim() == 2 else torch.full_like(r, -1.0) for r in rows], fill=-1.0)
        if self.teacher_norm == "zscore":
            teacher = standardize_lists(teacher, mask)
        return student, teacher, judged, mask

    def compute(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        return {}

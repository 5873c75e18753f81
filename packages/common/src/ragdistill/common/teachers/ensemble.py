"""Several teachers as one: ``teacher.backend=ensemble`` with weighted ``members``.

How members are combined, per capability (weights are normalised to sum to 1):

- ``score``: the weighted mean of the members' scores. Members should share a score scale (e.g.
  cross-encoders trained alike); otherwise rescale them through the weights.
- ``embed``: each member's vector is L2-normalised first.
  ``combine=concat`` (default; any dimensions): the vectors are scaled by sqrt(weight) and
  concatenated. The result has unit norm and the dot product of two ensemble vectors is exactly the
  weighted mean of the members' cosine similarities, so it *is* the averaged similarity matrix,
  as one vector a student can be distilled into. Its width is the sum of the members' (384 + 768 =
  1152 for minilm-l6 + mpnet): a narrower student learns it through a projection (the embedder
  stage's ``embedder.projection=learned``), or from its similarity structure alone (relational losses).
  ``combine=mean``: the weighted mean of the normalised vectors, renormalised; needs one dimension.
- ``generate``: every member answers; the answer agreeing most (weighted ROUGE-L) with the other
  members' answers wins. With two members they agree equally, so the heavier member's answer wins:
  use three or more for a majority. (Token-level logit averaging would need members sharing a
  tokenizer and step-by-step decoding; not done here.)

The ensemble's ``teacher_id`` names every member, its weight and the combination, so the label
cache never mixes ensemble labels with a single teacher's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers.base import EmbeddingTeacher, GenerationTeacher, Messages, ScoringTeacher, Teacher

COMBINE_MODES = ("concat", "mean")


class _Ensemble:
    def __init__(self, members: list[tuple[Teacher, float]], combine: str = "concat") -> None:
        if not members:
            raise RagdistillError("teacher.backend=ensemble needs teacher.members: a list of teacher configs with weights")
        if combine not in COMBINE_MODES:
            raise RagdistillError(f"teacher.combine={combine!r}: choose one of {', '.join(COMBINE_MODES)}")
        total = sum(w for _, w in members)
        if any(w <= 0 for _, w in members) or total <= 0:
            raise RagdistillError(f"teacher.members: weights must be > 0, got {[w for _, w in members]}")
        self.members = [(t, w / total) for t, w in members]
        self.combine = combine
        self.teacher_id = "ens:" + json.dumps({"combine": combine, "members": [[t.teacher_id, round(w, 6)] for t, w in self.members]},
                                              separators=(",", ":"))


class _Embed:
    members: list[tuple[Teacher, float]]
    combine: str

    @property
    def dim(self) -> int | None:
        dims = [getattr(t, "dim", None) for t, _ in self.members]
        if any(d is None for d in dims):
            return None
        return int(sum(dims)) if self.combine == "concat" else int(dims[0])

    def embed(self, texts: list[str]) -> np.ndarray:
        parts = []
        for t, w in self.members:
            v = np.asarray(t.embed(texts), dtype=np.float32)
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            parts.append((v, w))
        if self.combine == "concat":
            return np.concatenate([v * np.float32(np.sqrt(w)) for v, w in parts], axis=1)
        dims = {v.shape[1] for v, _ in parts}
        if len(dims) > 1:
            raise RagdistillError(
                f"teacher.combine=mean needs members of one dimension, got {[(t.teacher_id, v.shape[1]) for (t, _), (v, _) in zip(self.members, parts, strict=True)]}; "
                "use teacher.combine=concat (any dimensions)")
        m = sum(v * np.float32(w) for v, w in parts)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


class _Score:
    members: list[tuple[Teacher, float]]

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        total = np.zeros(len(pairs), dtype=np.float64)
        for t, w in self.members:
            total += w * np.asarray(t.score(pairs), dtype=np.float64)
        return [float(x) for x in total]

    def forget(self) -> None:
        """Forget what members memoised (see ``SentenceTransformerTeacher.forget``)."""
        for t, _ in self.members:
            if hasattr(t, "forget"):
                t.forget()


class _Generate:
    members: list[tuple[Teacher, float]]

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        from ragdistill.common.answer_metrics import rouge_l

        answers = [t.generate(conversations, **overrides) for t, _ in self.members]
        weights = [w for _, w in self.members]
        out = []
        for i in range(len(conversations)):
            cands = [a[i] for a in answers]
            best = max(range(len(cands)), key=lambda j: (
                sum(weights[k] * rouge_l(cands[j], [cands[k]]) for k in range(len(cands)) if k != j), weights[j], -j))
            out.append(cands[best])
        return out


_CAPS = ((EmbeddingTeacher, _Embed), (ScoringTeacher, _Score), (GenerationTeacher, _Generate))


def make_ensemble(members: list[tuple[Teacher, float]], combine: str = "concat") -> Teacher:
    """An ensemble offering the capabilities every member shares (so ``require`` still checks them)."""
    mixins = tuple(mix for cap, mix in _CAPS if members and all(isinstance(t, cap) for t, _ in members))
    if members and not mixins:
        raise RagdistillError("teacher.members share no capability (embed, score or generate); an ensemble needs members of one kind, "
                              f"got {[type(t).__name__ for t, _ in members]}")
    cls = type("EnsembleTeacher", (*mixins, _Ensemble), {"__doc__": __doc__})
    return cls(members, combine)


def build_ensemble(cfg: Any, build_one: Callable[[Any], Teacher]) -> Teacher:
    """Build each member from its config (checked against TeacherConfig: a typo names the member)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ragdistill.common.config import TeacherConfig

    get = cfg.get if isinstance(cfg, dict) or hasattr(cfg, "get") else lambda k, d=None: getattr(cfg, k, d)
    raw = get("members") or []
    if not raw:
        raise RagdistillError("teacher.backend=ensemble needs teacher.members, e.g. "
                              "members: [{backend: sentence_transformer, model: minilm-l6, weight: 0.5}, {..., model: mpnet}]")
    members = []
    for i, m in enumerate(raw):
        m = OmegaConf.to_container(m, resolve=True) if OmegaConf.is_config(m) else dict(m)
        if not isinstance(m, dict):
            raise RagdistillError(f"teacher.members[{i}]: expected a teacher config (backend, model, weight, ...), got {m!r}")
        weight = m.pop("weight", 1.0)
        if m.get("backend") == "ensemble":
            raise RagdistillError(f"teacher.members[{i}]: an ensemble cannot contain an ensemble; list its members instead")
        try:
            member_cfg = OmegaConf.merge(OmegaConf.structured(TeacherConfig), m)
        except OmegaConfBaseException as e:
            raise RagdistillError(f"teacher.members[{i}]: {e}") from e
        if not isinstance(weight, (int, float)):
            raise RagdistillError(f"teacher.members[{i}].weight={weight!r}: must be a number > 0")
        members.append((build_one(member_cfg), float(weight)))
    return make_ensemble(members, get("combine") or "concat")

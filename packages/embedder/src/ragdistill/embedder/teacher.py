"""The embedder's teacher behind the label cache: one text in, one embedding out.

Labels are keyed as ``teach`` has always keyed them: the teacher backend's own id
(``st:<model>:norm=True:len=<max_length>`` for a sentence-transformers teacher), the template
:data:`TEMPLATE` and the text itself, so the shipped ``data/labels/embedder*.jsonl*`` files
(``embedder.teach.shipped_labels``) keep hitting and every verb reads what ``teach`` labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragdistill.common.teachers.cached import CachedTeacher, TemplateCall

TEMPLATE = "embed|prompt="  # cache-key template of a plain (prompt-free) text embedding


def embed_teacher(cfg: Any) -> CachedTeacher:
    """``cfg.teacher`` as a lazily built, cached embedding teacher (shipped labels imported on first use)."""
    return CachedTeacher(cfg, "embed", shipped=list(cfg.embedder.teach.shipped_labels), calls={TEMPLATE: TemplateCall()})


def teacher_vectors(teacher: CachedTeacher, texts: Sequence[str], desc: str) -> tuple[np.ndarray | None, Any]:
    """The teacher's embeddings of ``texts`` (rows in order; ``None`` when ``run.shard`` left some to
    another shard) and the :class:`~ragdistill.common.labelling.LabelRun` that read or made them."""
    run = teacher.label(list(texts), TEMPLATE, desc=desc)
    if any(v is None for v in run.labels):
        return None, run
    if not run.labels:
        return np.zeros((0, 0), dtype=np.float32), run
    return np.stack([np.asarray(v, dtype=np.float32) for v in run.labels]), run

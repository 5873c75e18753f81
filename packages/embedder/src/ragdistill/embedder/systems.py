"""The stage's encoders by name: teacher, student before distillation, student, and its ONNX exports.

One place builds them for every use (evaluate's columns, the pipeline component, the routing and
monitor predictors), so a variant embeds alike everywhere. The teacher's quality embeddings come
through the label cache (what ``teach`` labelled is read, not recomputed); its ``raw`` encoder calls
the model itself, for the speed rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.embedder.config import System as SystemName
from ragdistill.embedder.models import (
    FP32_FILE,
    INT8_FILE,
    embedding_dim,
    exported_model,
    load_sentence_transformer,
    trained_student,
)
from ragdistill.embedder.retrieve import EncodeFn
from ragdistill.embedder.teacher import embed_teacher, teacher_vectors

NAMES = tuple(s.value for s in SystemName)


@dataclass
class System:
    """One column of the comparison: how it embeds for quality (``encode``) and for speed (``raw``);
    ``path`` is the files it loads (None for a teacher that is not one local model)."""

    name: str
    encode: EncodeFn
    raw: EncodeFn
    dim: int
    size_mb: float
    path: Path | None = None
    close: Any = None  # releases what the system holds open (the teacher's label cache)
    label_runs: list[Any] = field(default_factory=list)  # the teacher's label-cache reads (LabelRuns), for the counts


def _st_system(name: str, path: str, max_length: int | None, batch_size: int, backend: str = "torch",
               file_name: str | None = None) -> System:
    st = load_sentence_transformer(path, max_length=max_length, backend=backend, file_name=file_name)

    def encode(texts: list[str]) -> np.ndarray:
        return st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=len(texts) > 4 * batch_size).astype(np.float32)

    folder = Path(resolve_model(path))
    size = (folder / file_name).stat().st_size if file_name else sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    return System(name, encode, encode, embedding_dim(st), size / 2**20, folder / file_name if file_name else folder)


def _teacher_system(cfg: Any) -> System:
    teacher = embed_teacher(cfg)
    runs: list[Any] = []

    def cached(texts: list[str]) -> np.ndarray:
        out, run = teacher_vectors(teacher, list(texts), "teacher embeddings")
        runs.append(run)
        if out is None:
            raise RagdistillError(f"run.shard={cfg.run.shard}: the teacher's embeddings are split over shard caches; merge them "
                                  "(ragdistill cache merge) and run without run.shard")
        return out

    local = cfg.teacher.backend == "sentence_transformer" and bool(cfg.teacher.model)
    folder = Path(resolve_model(cfg.teacher.model)) if local else None
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20 if folder and folder.exists() else float("nan")

    def raw(texts: list[str]) -> np.ndarray:
        return teacher.embed(list(texts))

    backend = teacher.backend  # built here, as the cached labels are keyed by its id
    dim = int(getattr(backend, "dim", 0) or teacher.embed(["dimension probe"]).shape[1])
    return System("teacher", cached, raw, dim, size, folder, teacher.close, runs)


def models_cfg(cfg: Any) -> Any:
    """``cfg`` with ``paths.work_dir`` at ``embedder.evaluate.models_from`` when set: where the trained
    student and its export are read from (the label cache and the outputs stay this run's)."""
    src = cfg.embedder.evaluate.get("models_from")
    if not src:
        return cfg
    if not Path(src).is_dir():
        raise RagdistillError(f"embedder.evaluate.models_from={src}: no such work dir; give the paths.work_dir the student was trained in")
    from omegaconf import OmegaConf, open_dict

    other = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(other):
        other.paths.work_dir = str(src)
    return other


def build_system(cfg: Any, name: str) -> System:
    """The named system, or a RagdistillError saying which verb produces what it needs."""
    s = cfg.embedder.evaluate
    ml, bs = cfg.student.max_length, int(s.batch_size)
    if name == "teacher":
        return _teacher_system(cfg)
    if name == "student_base":
        return _st_system(name, cfg.student.model, ml, bs)
    if name == "student":
        return _st_system(name, str(trained_student(models_cfg(cfg))), ml, bs)
    if name in ("student_onnx", "student_onnx_int8"):
        d = exported_model(models_cfg(cfg))
        return _st_system(name, str(d), ml, bs, backend="onnx", file_name=FP32_FILE if name == "student_onnx" else INT8_FILE)
    raise RagdistillError(f"embedder: unknown system {name!r}; choose from {', '.join(NAMES)}")

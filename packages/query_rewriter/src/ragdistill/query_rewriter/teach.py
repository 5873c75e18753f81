"""teach: the teacher rewrites CANARD follow-ups and expands standalone queries; outputs are
cached (resumable), filtered with counts reported, and written as training targets.

Writes ``<work_dir>/query_rewriter/teach/``: ``train.jsonl`` (one kept example per line:
id, task, source, question, history, reference, target), ``rejected.jsonl`` and ``stats.json``.
"""

from __future__ import annotations

import glob
from functools import partial
from typing import Any

from ragdistill.common.cache import LabelCache, Shard
from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_json, write_jsonl
from ragdistill.common.labelling import LabelRun, run_labelling
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import project_home
from ragdistill.common.teachers import GenerationTeacher, Messages, build_teacher, require
from ragdistill.query_rewriter.examples import expansion_train_examples, rewrite_train_examples, teacher_prompt
from ragdistill.query_rewriter.filters import FilterConfig, check_expansion, check_rewrite, filter_outputs
from ragdistill.query_rewriter.prompts import TASKS, Example, TeacherPrompt

log = get_logger(__name__)
STAGE = "query_rewriter"


def label_teacher_id(tcfg: Any) -> str:
    """The cache key's teacher part, known without loading the model (so cached runs never load it)."""
    where = f"@{tcfg.base_url}" if tcfg.backend == "openai" and tcfg.base_url else ""
    return f"{tcfg.backend}:{tcfg.model}{where}:T={tcfg.temperature}"


class LazyTeacher:
    """Builds the teacher on the first cache miss: a fully cached run never loads the 0.5B model."""

    def __init__(self, tcfg: Any) -> None:
        self.tcfg = tcfg
        self.teacher_id = label_teacher_id(tcfg)
        self._t: GenerationTeacher | None = None

    def get(self) -> GenerationTeacher:
        if self._t is None:
            log.info("loading teacher %s (%s)", self.tcfg.model, self.tcfg.backend)
            self._t = require(build_teacher(self.tcfg), GenerationTeacher, STAGE)
        return self._t

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        """A generation teacher for ``run_labelling``: loads the model on the first call only."""
        return self.get().generate(conversations, **overrides)


def prepare_messages(prompt: TeacherPrompt, task: str, sources: list[str]) -> list[Messages]:
    """The teacher's few-shot prompts for cached ``sources`` of one task (the prompt depends on the
    task and the source only). Module-level, so Ray workers can unpickle it to build the prompts
    where the teacher runs."""
    return [prompt.messages_for(task, s) for s in sources]


def label_template(prompt: TeacherPrompt, task: str, n_new: int) -> str:
    """The label-cache template of one task's teacher outputs (teach, evaluate and calibrate share it)."""
    return f"{prompt.template_id}:{task}:max={n_new}"


def max_new_tokens(cfg: Any, task: str) -> int:
    t = cfg.query_rewriter.teach
    return int(t.rewrite_max_new_tokens if task == "rewrite" else t.expansion_max_new_tokens)


def filter_config(cfg: Any) -> FilterConfig:
    t = cfg.query_rewriter.teach
    return FilterConfig(int(t.min_expansions), int(t.max_expansions), int(t.max_words), float(t.max_ratio))


def open_cache(cfg: Any) -> LabelCache:
    """The stage's label cache, with the shipped labels (``teach.import_labels``) merged in."""
    cache = LabelCache(cfg.paths.label_cache, shard=Shard.parse(cfg.run.shard))
    for pattern in cfg.query_rewriter.teach.import_labels:
        full = pattern if pattern.startswith("/") else str(project_home() / pattern)
        for f in sorted(glob.glob(full)):
            n = cache.import_jsonl(f)
            if n:
                log.info("imported %d shipped teacher labels from %s", n, f)
    return cache


def teacher_label_runs(cfg: Any, examples: list[Example], cache: LabelCache, teacher: LazyTeacher | None = None,
                       desc: str = "teacher") -> tuple[list[str | None], dict[str, LabelRun]]:
    """The teacher's raw output for each example and, per task, what was cached or labelled.

    The cache input stays the example's source (keys as before, so the shipped labels hit);
    :func:`prepare_messages` turns sources into the teacher's prompts wherever ``run.launcher``
    runs the teacher (here, on this shard, or on Ray workers)."""
    teacher = teacher or LazyTeacher(cfg.teacher)
    tid = label_teacher_id(cfg.teacher)
    prompt = teacher_prompt(cfg)
    out: list[str | None] = [None] * len(examples)
    runs: dict[str, LabelRun] = {}
    for task in TASKS:
        idx = [i for i, e in enumerate(examples) if e.task == task]
        if not idx:
            continue
        n_new = max_new_tokens(cfg, task)
        run = run_labelling(cache, teacher.tcfg, "generate", [examples[i].source for i in idx], cfg, template=label_template(prompt, task, n_new),
                            batch_size=int(cfg.teacher.batch_size), desc=f"{desc} {task}s", teacher=teacher, key_id=tid,
                            prepare=partial(prepare_messages, prompt, task), overrides={"max_new_tokens": n_new})
        runs[task] = run
        for i, lab in zip(idx, run.labels, strict=True):
            out[i] = lab
    return out, runs


def teacher_outputs(cfg: Any, examples: list[Example], cache: LabelCache, teacher: LazyTeacher | None = None, desc: str = "teacher") -> list[str | None]:
    """The teacher's raw output for each example (cached; computed in batches only when missing)."""
    return teacher_label_runs(cfg, examples, cache, teacher, desc)[0]


def training_examples(cfg: Any) -> list[Example]:
    tasks = list(cfg.query_rewriter.teach.tasks)
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise RagdistillError(f"query_rewriter.teach.tasks has unknown task(s) {sorted(unknown)}; choose from {list(TASKS)}")
    exs: list[Example] = []
    if "rewrite" in tasks:
        exs += rewrite_train_examples(cfg)
    if "expansion" in tasks:
        exs += expansion_train_examples(cfg)
    return exs


def teach(cfg: Any) -> dict[str, Any]:
    out_dir = stage_dir(cfg, STAGE, "teach")
    examples = training_examples(cfg)
    cache = open_cache(cfg)
    try:
        outputs, runs = teacher_label_runs(cfg, examples, cache, desc="teacher")
    finally:
        cache.close()
    fcfg = filter_config(cfg)
    kept, report = filter_outputs(examples, outputs, fcfg)
    rows = [
        {"id": ex.id, "task": ex.task, "source": ex.source, "question": ex.question, "history": list(ex.history),
         "reference": ex.reference, "target": target}
        for ex, target in kept
    ]
    kept_ids = {(ex.task, ex.id) for ex, _ in kept}
    rejected = []
    for ex, out in zip(examples, outputs, strict=True):
        if out is not None and (ex.task, ex.id) not in kept_ids:
            reason = (check_rewrite(ex, out, fcfg) if ex.task == "rewrite" else check_expansion(ex, out, fcfg))[0]
            rejected.append({"id": ex.id, "task": ex.task, "source": ex.source, "output": out, "reason": reason})
    write_jsonl(out_dir / "train.jsonl", rows)
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    labels = {task: {"launcher": r.launcher, "cached": r.cached, "labelled": r.labelled} for task, r in runs.items()}
    stats = {"teacher": label_teacher_id(cfg.teacher), "filters": report.as_dict(), "examples": len(examples), "kept": len(rows),
             "teacher_labels": labels}
    write_json(out_dir / "stats.json", stats)
    for task, c in stats["filters"].items():
        print(f"[query_rewriter teach] {task}: {c['kept']}/{c['total']} kept; rejected empty={c['empty']} "
              f"malformed={c['malformed']} echoed={c['echoed']} too_long={c['too_long']}; unchanged={c['unchanged']}; "
              f"teacher labels: {labels.get(task, {}).get('cached', 0)} cached, {labels.get(task, {}).get('labelled', 0)} labelled", flush=True)
    if not rows:
        raise RagdistillError(f"the teacher produced no usable targets ({out_dir / 'rejected.jsonl'} lists why); check teacher= and the prompts")
    return stats


def export_labels(cfg: Any) -> int:
    """Extra verb: write this teacher's cached labels to ``data/labels/query_rewriter.jsonl`` to ship them."""
    path = project_home() / "data" / "labels" / "query_rewriter.jsonl"
    cache = LabelCache(cfg.paths.label_cache)
    try:
        n = cache.export_jsonl(path, teacher_id=label_teacher_id(cfg.teacher))
    finally:
        cache.close()
    print(f"[query_rewriter export_labels] {n} labels -> {path}")
    return n

"""The teacher's labels: how they are keyed, asked for and read, for every verb alike.

A label's cache input is the example's source text (the conversation, or the query to expand); its
template is ``<TeacherPrompt.template_id>:<task>:max=<max_new_tokens>`` and its teacher part
:func:`label_teacher_id`. These are the keys ``data/labels/query_rewriter.jsonl`` was made with, so
the shipped labels hit. :func:`cached_teacher` is the stage's one teacher
(:class:`~ragdistill.common.teachers.cached.CachedTeacher`): per template it turns sources into the
teacher's few-shot prompts (:func:`prepare_messages`, wherever ``run.launcher`` runs the teacher) with
the task's token budget.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ragdistill.common.labelling import LabelRun
from ragdistill.common.teachers import Messages
from ragdistill.common.teachers.cached import CachedTeacher, TemplateCall
from ragdistill.query_rewriter.prompts import TASKS, Example, TeacherPrompt


def label_teacher_id(tcfg: Any) -> str:
    """The cache key's teacher part, known without loading the model (so cached runs never load it)."""
    where = f"@{tcfg.base_url}" if tcfg.backend == "openai" and tcfg.base_url else ""
    return f"{tcfg.backend}:{tcfg.model}{where}:T={tcfg.temperature}"


def prepare_messages(prompt: TeacherPrompt, task: str, sources: list[str]) -> list[Messages]:
    """The teacher's few-shot prompts for cached ``sources`` of one task (the prompt depends on the
    task and the source only). Module-level, so Ray workers can unpickle it to build the prompts
    where the teacher runs."""
    return [prompt.messages_for(task, s) for s in sources]


def label_template(prompt: TeacherPrompt, task: str, n_new: int) -> str:
    """The label-cache template of one task's teacher outputs (every verb shares it)."""
    return f"{prompt.template_id}:{task}:max={n_new}"


def max_new_tokens(cfg: Any, task: str) -> int:
    t = cfg.query_rewriter.teach
    return int(t.rewrite_max_new_tokens if task == "rewrite" else t.expansion_max_new_tokens)


def task_template(cfg: Any, task: str, prompt: TeacherPrompt | None = None) -> str:
    """The template of ``task``'s labels under ``cfg`` (``prompt``: the teacher prompt, if already built)."""
    from ragdistill.query_rewriter.examples import teacher_prompt

    return label_template(prompt or teacher_prompt(cfg), task, max_new_tokens(cfg, task))


def cached_teacher(cfg: Any) -> CachedTeacher:
    """The stage's teacher behind the label cache: lazy (a fully cached run loads no model), the
    ``teach.shipped_labels`` imported, labels keyed by :func:`label_teacher_id`, one
    :class:`TemplateCall` per task (prompts built from the source, the task's ``max_new_tokens``)."""
    from ragdistill.query_rewriter.examples import teacher_prompt

    prompt = teacher_prompt(cfg)
    calls = {}
    for task in TASKS:
        n = max_new_tokens(cfg, task)
        calls[label_template(prompt, task, n)] = TemplateCall(prepare=partial(prepare_messages, prompt, task), overrides={"max_new_tokens": n})
    return CachedTeacher(cfg, "generate", shipped=list(cfg.query_rewriter.teach.shipped_labels), key_id=label_teacher_id(cfg.teacher),
                         calls=calls)


def teacher_outputs(cfg: Any, teacher: CachedTeacher, examples: list[Example], desc: str = "teacher",
                    complete: bool = False) -> tuple[list[str | None], dict[str, LabelRun]]:
    """The teacher's raw output for each example (None where another ``run.shard`` labels it, unless
    ``complete`` makes that an error) and, per task, what was cached or labelled."""
    from ragdistill.query_rewriter.examples import teacher_prompt

    prompt = teacher_prompt(cfg)
    out: list[str | None] = [None] * len(examples)
    runs: dict[str, LabelRun] = {}
    for task in TASKS:
        idx = [i for i, e in enumerate(examples) if e.task == task]
        if not idx:
            continue
        run = teacher.label([examples[i].source for i in idx], task_template(cfg, task, prompt), desc=f"{desc} {task}s", complete=complete)
        runs[task] = run
        for i, lab in zip(idx, run.labels, strict=True):
            out[i] = lab
    return out, runs

"""The stage's generation teachers behind the label cache, keyed as this stage has always keyed them.

A label's key is ``label_key(teacher_key(...), template, conversation)``: the teacher id names the
backend, model and decoding settings (``gen:<backend>:<model>:T=<temperature>:max=<max_new_tokens>``),
so changing any of them labels afresh (greedy vLLM answers are filed as the causal LM's: see
:func:`teacher_key`), and the shipped ``data/labels/generator-squad.jsonl.gz`` (made with these keys)
keeps hitting. Three teachers use it: the answer teacher (``teach``, ``evaluate``,
calibrate, routing, the monitor), the judge filter's (possibly another model) and the undistilled
student, whose greedy answers ``evaluate`` caches like a teacher's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragdistill.common.teachers.cached import CachedTeacher

ANSWER_TEMPLATE = "generator:answer:v1"
JUDGE_TEMPLATE = "generator:judge:v1"


# engines whose greedy answers are the same labels as another backend's for the same model folder
SAME_GREEDY_LABELS = {"vllm": "causal_lm"}


def teacher_key(tcfg: Any, max_new_tokens: int | None = None) -> str:
    """A stable id for a generation teacher's labels: backend, model and decoding settings.

    Greedy decoding (T=0) on vLLM files its answers as the transformers causal LM's: same weights,
    same greedy answers (vLLM CPU fp32 and transformers agreed on 59 of 59 Qwen2.5-0.5B SQuAD
    answers), so labels made on the faster engine serve ``teacher.backend=causal_lm`` and back."""
    get = tcfg.get if hasattr(tcfg, "get") else lambda k, d=None: getattr(tcfg, k, d)
    mnt = max_new_tokens if max_new_tokens is not None else get("max_new_tokens")
    backend, temperature = get("backend"), float(get("temperature"))
    if temperature == 0.0:
        backend = SAME_GREEDY_LABELS.get(backend, backend)
    return f"gen:{backend}:{get('model')}:T={temperature}:max={int(mnt)}"


def teacher_max_new_tokens(cfg: Any) -> int:
    """The answer teacher's budget: longer in rationale mode (it explains first)."""
    g = cfg.generator
    return int(g.teach.rationale_max_new_tokens if g.prompt.rationale else cfg.teacher.max_new_tokens)


def _with_teacher(cfg: Any, tcfg: Any) -> Any:
    """``cfg`` with ``teacher`` replaced by ``tcfg`` (the cache, launcher and run settings stay)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(tcfg, resolve=True) if OmegaConf.is_config(tcfg) else dict(tcfg)
    return OmegaConf.merge(cfg, {"teacher": plain})


def generation_teacher(cfg: Any, tcfg: Any = None, max_new_tokens: int | None = None, template: str = ANSWER_TEMPLATE,
                       factory: Callable[[], Any] | None = None) -> CachedTeacher:
    """A generation teacher (``tcfg``, default ``cfg.teacher``) behind the stage's label cache: labels
    of ``template`` are asked for with ``max_new_tokens`` and keyed by :func:`teacher_key`."""
    from ragdistill.common.teachers.cached import TemplateCall

    if tcfg is not None:
        cfg = _with_teacher(cfg, tcfg)
    mnt = int(max_new_tokens if max_new_tokens is not None else cfg.teacher.max_new_tokens)
    return CachedTeacher(cfg, "generate", shipped=list(cfg.generator.teach.shipped_labels), key_id=teacher_key(cfg.teacher, mnt),
                         factory=factory, batch_size=int(cfg.teacher.get("batch_size") or 4),
                         calls={template: TemplateCall(overrides={"max_new_tokens": mnt})})


def answer_teacher(cfg: Any) -> CachedTeacher:
    """The stage's teacher: its answers to the prompt's conversations (:data:`ANSWER_TEMPLATE`)."""
    return generation_teacher(cfg, max_new_tokens=teacher_max_new_tokens(cfg))


def judge_teacher(cfg: Any) -> CachedTeacher:
    """The judge filter's teacher (``teach.filters.judge.teacher``, else the stage's), its own labels."""
    j = cfg.generator.teach.filters.judge
    return generation_teacher(cfg, j.teacher or cfg.teacher, int(j.max_new_tokens), JUDGE_TEMPLATE)


def undistilled_teacher(cfg: Any) -> CachedTeacher:
    """The student before distillation as a cached generation backend (a fixed checkpoint: its greedy
    answers are cached like a teacher's, keyed by the student model and its answer budget)."""
    from ragdistill.generator.students import LocalGenerator

    g = cfg.generator
    max_new, bs, model = int(g.student_max_new_tokens), int(g.evaluate.batch_size), cfg.student.model
    key = {"backend": "causal_lm", "model": model, "temperature": 0.0, "max_new_tokens": max_new, "batch_size": bs}
    return generation_teacher(cfg, key, max_new, factory=lambda: LocalGenerator(model, max_new, bs))


def judge_backend(cfg: Any, tcfg: Any = None) -> CachedTeacher:
    """A judge for ragas' LLM metrics (``tcfg``, default the stage's teacher): called directly, not cached
    (ragas retries with its own prompts); ``teacher_id`` names it in reports."""
    return generation_teacher(cfg, tcfg)

"""How one system's answers are scored, and the inherited-vs-compression error analysis.

Answer correctness against the references: SQuAD exact match and token F1 (common.answer_metrics,
shared with e2e). ragas' non-LLM metrics (BLEU, ROUGE-L, string similarity, exact match) run on
the same answers, max over the references. ``grounding`` (share of the answer's content tokens
found in the contexts) is the faithfulness proxy that needs no judge. ``format_ok`` is the share
of replies that follow the requested format; ``answer_correct`` the share with token F1 >= 0.5
(what the error analysis counts as right).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragdistill.common.answer_metrics import exact_match, grounding, token_f1
from ragdistill.generator.examples import QAExample
from ragdistill.generator.prompts import FormatError, parse_reply

WRONG_F1 = 0.5  # an answer with token F1 below this is an error in the error analysis


def answer_of(reply: str, prompt: Any) -> tuple[str, bool]:
    """The parsed answer and whether the reply followed the format (else its first line is scored)."""
    try:
        return parse_reply(reply, prompt).answer, True
    except FormatError:
        lines = (reply or "").strip().splitlines()
        return (lines[0].strip() if lines else ""), False


class Reply(str):
    """A model's raw reply (a plain ``str`` to any caller: the label cache, the failure queue) that
    carries its answer as the prompt's format reads it, so code without the config (the monitor's
    disagreement) compares answers, not raw replies."""

    answer: str
    format_ok: bool

    def __new__(cls, raw: str, answer: str, format_ok: bool) -> Reply:
        obj = super().__new__(cls, raw)
        obj.answer, obj.format_ok = answer, format_ok
        return obj

    @classmethod
    def parse(cls, raw: str | None, prompt: Any) -> Reply:
        return cls(raw or "", *answer_of(raw or "", prompt))

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (Ray, multiprocessing) with its answer
        return (Reply, (str(self), self.answer, self.format_ok))


def answer_text(output: str) -> str:
    """The answer of a :class:`Reply`; any other string is taken as an answer already (a logged one)."""
    return output.answer if isinstance(output, Reply) else str(output or "")


def _ragas_metrics() -> dict[str, Any]:
    from ragas.metrics.collections import BleuScore, ExactMatch, NonLLMStringSimilarity, RougeScore

    return {"ragas_bleu": BleuScore(), "ragas_rouge_l": RougeScore(rouge_type="rougeL", mode="fmeasure"),
            "ragas_string_similarity": NonLLMStringSimilarity(), "ragas_exact_match": ExactMatch()}


def score_answers(examples: Sequence[QAExample], replies: Sequence[str], prompt: Any) -> list[dict[str, Any]]:
    """One row per example: the answer and its scores."""
    ragas = _ragas_metrics()
    rows = []
    for e, reply in zip(examples, replies, strict=True):
        answer, ok = answer_of(reply, prompt)
        refs = e.answers or [""]
        row = {"id": e.id, "answer": answer, "format_ok": float(ok), "exact_match": exact_match(answer, refs),
               "token_f1": token_f1(answer, refs), "answer_correct": 0.0, "grounding": grounding(answer, e.context_texts),
               "answer_words": float(len(answer.split()))}
        row["answer_correct"] = float(row["token_f1"] >= WRONG_F1)  # the error analysis' notion of a right answer
        for name, m in ragas.items():
            row[name] = max(float(m.score(reference=r, response=answer or " ").value) for r in refs)
        rows.append(row)
    return rows


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)] if rows else []
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def error_analysis(examples: Sequence[QAExample], by_system: dict[str, list[dict[str, Any]]], max_examples: int = 10) -> dict[str, Any]:
    """For each distilled-student error (token F1 < 0.5): did the teacher get it wrong too
    (``inherited``) or right (``compression``: lost in the smaller model)? Also what distillation
    fixed and broke relative to the undistilled student."""
    teacher, student, base = by_system["teacher"], by_system["student"], by_system.get("student_base")
    out: dict[str, Any] = {"wrong_if_token_f1_below": WRONG_F1, "inherited": 0, "compression": 0, "examples": {"inherited": [], "compression": []}}
    fixed = broken = 0
    for i, e in enumerate(examples):
        s_wrong = student[i]["token_f1"] < WRONG_F1
        t_wrong = teacher[i]["token_f1"] < WRONG_F1
        if base is not None:
            b_wrong = base[i]["token_f1"] < WRONG_F1
            fixed += b_wrong and not s_wrong
            broken += s_wrong and not b_wrong
        if not s_wrong:
            continue
        kind = "inherited" if t_wrong else "compression"
        out[kind] += 1
        if len(out["examples"][kind]) < max_examples:
            out["examples"][kind].append({"id": e.id, "question": e.question, "references": e.answers,
                                          "teacher": teacher[i]["answer"], "student": student[i]["answer"],
                                          **({"student_base": base[i]["answer"]} if base is not None else {})})
    n_err = out["inherited"] + out["compression"]
    out.update({"student_errors": n_err, "questions": len(examples),
                "inherited_share": out["inherited"] / n_err if n_err else 0.0,
                "teacher_errors": sum(r["token_f1"] < WRONG_F1 for r in teacher)})
    if base is not None:
        out.update({"fixed_by_distillation": fixed, "broken_by_distillation": broken})
    return out

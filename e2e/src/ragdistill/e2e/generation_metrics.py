"""Generation quality of a pipeline run: the common answer metrics, averaged over answered questions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ragdistill.common.answer_metrics import exact_match, grounding, rouge_l, token_f1


def score_answers(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean EM / token F1 / ROUGE-L against references (where present), grounding in the contexts
    given to the generator, and how often the gold passage was among those contexts."""
    with_refs = [r for r in rows if r["references"]]
    out = {
        "grounding": float(np.mean([grounding(r["answer"], r["contexts"]) for r in rows])),
        "gold_in_contexts": float(np.mean([r["gold_in_contexts"] for r in rows])),
        "n_answers": len(rows),
    }
    if with_refs:
        out["exact_match"] = float(np.mean([exact_match(r["answer"], r["references"]) for r in with_refs]))
        out["token_f1"] = float(np.mean([token_f1(r["answer"], r["references"]) for r in with_refs]))
        out["rouge_l"] = float(np.mean([rouge_l(r["answer"], r["references"]) for r in with_refs]))
    return out

"""The conversational pipeline on a CANARD slice with real models: each follow-up's history reaches the
rewriter, retrieval uses the rewrite, and the report shows the raw question beside it.

The rewriter is the stage's teacher (Qwen2.5-0.5B) read through the label cache: the shipped labels
hold its rewrites of these CANARD test conversations, keyed by the conversation text, so the test
also proves the pipeline builds the same conversation text from the history as ``evaluate`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ragdistill.e2e.config  # noqa: F401  (registers the e2e schema)
from ragdistill.common.config import compose
from ragdistill.common.data import load_rag
from ragdistill.common.stage import get_stage
from ragdistill.e2e.cli import run_e2e

pytestmark = pytest.mark.usefixtures("one_thread")

SLICE = ["data=canard", "data.max_queries=4", "data.max_docs=24", "max_generate=1", "retrieval.n_contexts=1", "mteb=false"]
PIPELINE = ["pipeline.rewriter=teacher", "pipeline.embedder=student_base", "pipeline.reranker=off", "pipeline.generator=student_base"]
GENERATOR = ["+stage_overrides.generator=['generator.student_max_new_tokens=12','generator.prompt.max_context_chars=300']"]


def test_history_reaches_the_rewriter_and_retrieval_uses_the_rewrite(work_dir: Path) -> None:
    out = run_e2e(compose("e2e", [f"paths.work_dir={work_dir}", "run.report_to=[]", *SLICE, *PIPELINE, *GENERATOR,
                                  f"out_dir={work_dir / 'conv'}"]))
    r = json.loads((out / "report.json").read_text())["result"]
    _, records = load_rag("canard", 4, 24)
    recs = {x.id: x for x in records["test"]}
    assert r["n_queries"] == 4 and r["conversational"] == 4 and set(r["rewrites"]) == set(recs)
    # what the teacher rewrites for each conversation, asked directly (cache hits: the pipeline just asked the same)
    cfg = compose("query_rewriter", [f"paths.work_dir={work_dir}", "run.report_to=[]", "data.name=canard"])
    from ragdistill.query_rewriter.component import as_rewrite, predictor

    rows = [{"history": recs[q].history, "question": recs[q].question} for q in r["rewrites"]]
    with_history = [as_rewrite(o, row) for o, row in zip(predictor(cfg, "teacher")(rows), rows, strict=True)]
    rewritten = 0
    for (qid, rw), expected, row in zip(r["rewrites"].items(), with_history, rows, strict=True):
        assert rw["history_turns"] == len(recs[qid].history) >= 2
        assert rw["query"] == expected, qid  # the pipeline's query is the teacher's rewrite of this very conversation
        if expected.strip() != row["question"].strip():
            rewritten += 1
            assert rw["query"] != rw["question"]
    assert rewritten >= 2, r["rewrites"]  # the teacher resolves the follow-ups (pronouns -> the entity from the history)
    # retrieval ran on the rewrite, and the raw question's retrieval is reported beside it
    raw, rew = r["retrieval_raw_question"], r["retrieval"]
    assert set(raw) == set(rew) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
    assert all(0.0 <= v <= 1.0 for v in [*raw.values(), *rew.values()])
    # the generator got the standalone rewrite, and the reference is the answer span
    (qid, ans), = r["answers"].items()
    assert ans["query"] == r["rewrites"][qid]["query"] and ans["references"] == recs[qid].answers
    assert r["generation"]["n_answers"] == 1 and 0.0 <= r["generation"]["token_f1"] <= 1.0
    html = (out / "report.html").read_text()
    assert "raw question (no rewrite)" in html and "Rewrites (" in html and "4 with a conversation history" in html
    assert get_stage("query_rewriter").slot == "rewriter"


def test_rewriter_auto_is_on_for_conversations_and_off_for_single_questions(work_dir: Path) -> None:
    """``pipeline.rewriter=auto`` (the default) resolves to the student on CANARD and to off on SQuAD."""
    from ragdistill.e2e.runner import is_conversational, resolve_auto

    base = [f"paths.work_dir={work_dir}", "data.max_queries=2", "data.max_docs=10"]
    canard, squad = compose("e2e", [*base, "data=canard"]), compose("e2e", base)
    assert canard.pipeline.rewriter == squad.pipeline.rewriter == "auto"
    assert is_conversational(canard) and not is_conversational(squad)
    assert resolve_auto(canard, True).pipeline.rewriter == "student" and resolve_auto(squad, False).pipeline.rewriter == "off"
    assert load_rag("squad", 2, 10)[1]["test"][0].history == []

"""A user's own data through the real verbs: a BEIR folder with test qrels only (as most public BEIR
sets ship) is enough for an evaluate-only verb; a verb that trains names the split it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.stage import get_stage

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = ["Paris is the capital and most populous city of France.", "Berlin is the capital and largest city of Germany.",
        "Madrid is the capital of Spain.", "The Nile is a major river in northeastern Africa."]
QUERIES = ["capital of France", "largest city in Germany", "river in Africa"]


def _test_only_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(QUERIES)))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\nq2\td3\t1\n")
    return root


def test_evaluate_needs_only_the_test_split_and_teach_names_the_train_split(make_cfg, tmp_path: Path) -> None:
    folder = _test_only_beir(tmp_path / "mine")
    cfg = make_cfg("embedder", [f"data.path={folder}", "embedder.evaluate.systems=[student_base]", "embedder.evaluate.mteb=false",
                                "embedder.evaluate.speed_texts=4", "embedder.evaluate.latency_queries=2", "monitor.baseline_inputs=0"])
    verbs = stage_verbs(get_stage("embedder"))
    res = verbs["evaluate"](cfg)
    assert res.n_items == 3 and res.split == "test"
    assert res.results["student_base"]["ndcg@10"] > 0.5  # MiniLM finds these capitals and the river
    assert res.provenance["config"]["data"]["path"] == str(folder)  # the data it measured, recorded with the figures
    with pytest.raises(RagdistillError, match=r"has no split 'train' \(available: \['test'\]\); verbs that train \(teach, train\) read it"):
        verbs["teach"](cfg)

"""Swapping in a stage whose artifact was never made fails before any query, naming the command that makes it."""

from __future__ import annotations

from pathlib import Path

import pytest

import ragdistill.e2e.config  # noqa: F401  (registers the e2e schema)
from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.e2e.cli import run_e2e

MISSING = [("rewriter", "student", "query_rewriter train"), ("rewriter", "student_onnx", "query_rewriter export"),
           ("embedder", "student", "embedder train"), ("embedder", "student_onnx", "embedder export"),
           ("reranker", "student", "reranker train"), ("reranker", "student_onnx", "reranker export"),
           ("reranker", "colbert", "reranker train"),
           ("generator", "student", "generator train"), ("generator", "student_onnx", "generator export")]


@pytest.mark.parametrize(("slot", "variant", "command"), MISSING)
def test_missing_artifact_names_the_command_that_makes_it(work_dir: Path, slot: str, variant: str, command: str) -> None:
    """A fresh work dir has no student or export (the embedder is the packaged MiniLM, loaded first)."""
    pipeline = {"rewriter": "off", "embedder": "student_base", "reranker": "off", "generator": "off", slot: variant}
    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "run.report_to=[]", "data.max_queries=2", "data.max_docs=10",
                          *(f"pipeline.{s}={v}" for s, v in pipeline.items())])
    with pytest.raises(RagdistillError, match=rf"^pipeline\.{slot}={variant}: .*run `ragdistill {command}` first"):
        run_e2e(cfg)
    assert not (work_dir / "e2e" / "runs").exists()

"""The report people read: speed rows as speed-ups, stage tables flagged when measured on other data,
plots whose names never overlap."""

from __future__ import annotations

from pathlib import Path

from ragdistill.common.config import compose
from ragdistill.common.report import comparison_table, relative
from ragdistill.common.results import EvaluateResult, provenance
from ragdistill.e2e.report import _scatter, _stage_rows, short_label, stage_evaluations


def test_speed_rows_read_as_speed_ups_and_quality_as_a_share() -> None:
    assert relative("ndcg@10", 0.8, 0.72) == "90.0%"
    assert relative("latency_p50_ms", 40.0, 10.0) == "4.00x faster" and relative("p50_ms", 10.0, 40.0) == "4.00x slower"
    assert relative("items_per_s", 100.0, 250.0) == "2.50x faster"
    assert relative("size_mb", 420.0, 90.0) == "4.67x smaller" and relative("ndcg@10", 0.0, 0.5) is None
    res = {"teacher": {"ndcg@10": 0.8, "latency_p50_ms": 40.0}, "student": {"ndcg@10": 0.72, "latency_p50_ms": 10.0}}
    rows = _stage_rows(res)
    assert rows[1] == ["ndcg@10", 0.8, "0.72 (90.0%)"] and rows[2] == ["latency_p50_ms", 40.0, "10 (4.00x faster)"]
    table = comparison_table(res)
    assert "4.00x faster" in table and "400.0%" not in table  # never a latency "retention %"


def test_a_stage_table_from_other_data_is_flagged(work_dir: Path) -> None:
    """The embedder evaluated on SciFact sits beside an e2e run on SQuAD: the report says so."""
    cfg = compose("embedder", [f"paths.work_dir={work_dir}", "run.report_to=[]"])
    res = EvaluateResult("embedder", n_items=3, split="test", results={"teacher": {"ndcg@10": 0.7}})
    res.provenance = provenance(cfg)
    res.write(cfg)
    same = {"data": {k: cfg.data[k] for k in ("name", "path", "test_split", "max_queries", "max_docs")}}
    other = {"data": {**same["data"], "name": "squad", "max_queries": 100}}
    assert stage_evaluations(work_dir, same)["embedder"]["mismatch"] == []
    assert stage_evaluations(work_dir, other)["embedder"]["mismatch"] == [f"data.name: {cfg.data.name!r} vs 'squad'",
                                                                          f"data.max_queries: {cfg.data.max_queries!r} vs 100"]


def test_plot_names_fit_without_overlap(tmp_path: Path) -> None:
    p = {"rewriter": "off", "embedder": "student", "reranker": "student_onnx", "generator": "student"}
    assert short_label(p) == "all student, reranker=student_onnx"
    assert short_label({k: "teacher" if k != "rewriter" else "off" for k in p}) == "all teacher"
    pts = [(f"a very long pipeline name number {i} with every slot spelled out in full", 100.0 + i, 0.5) for i in range(6)]
    _scatter(pts, tmp_path / "q.png", "latency", "quality", "six points on one spot", figsize=(5, 3), fontsize=8)
    assert (tmp_path / "q.png").stat().st_size > 5000


def test_bench_pipeline_targets_read_three_reports() -> None:
    """bench/e2e.py pipeline's verdicts from hand-made results: 0.46 / 0.50 = 92% F1 at 3000 / 250 = 12x is met; the
    routed run at 0.49 / 0.50 = 98% with 25% teacher calls misses (too many calls); no routed run, no routed row."""
    import importlib.util

    from ragdistill.common.paths import project_home

    spec = importlib.util.spec_from_file_location("bench_e2e", project_home() / "bench" / "e2e.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def result(f1: float, p50_ms: float, teacher_fraction: float | None = None) -> dict:
        stages = {"generator": {"routing": {"teacher_fraction": teacher_fraction}}} if teacher_fraction is not None else {}
        return {"generation": {"token_f1": f1}, "latency": {"end_to_end": {"p50_ms": p50_ms}}, "stages": stages}

    checks = bench.pipeline_targets(result(0.50, 3000.0), result(0.46, 250.0), result(0.49, 900.0, 0.25))
    assert [ok for ok, _ in checks.values()] == [True, True, False]
    assert [fig for _, fig in checks.values()] == ["92.0%", "12.00x", "98.0% at 25% teacher calls"]
    slower = bench.pipeline_targets(result(0.50, 3000.0), result(0.45, 1000.0), None)
    assert [ok for ok, _ in slower.values()] == [False, False] and len(slower) == 2

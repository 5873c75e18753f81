"""The whole pipeline (rewrite -> retrieve -> rerank -> generate) through the real stage components
in teacher / student / export mode, on a small SQuAD slice, with MTEB and RAGAS rows.

Every artifact is made here by the stages' own verbs on tiny settings (one module-scoped work dir):
the reranker teacher by ``reranker build-teacher`` on MiniLM (never the cached ce-mpnet), then each
stage's teach -> train -> export. SmolLM2-135M stands in for the 0.5B generation teachers in the
pipeline (and is the RAGAS judge), as in the generator's own tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ragdistill.e2e.config  # noqa: F401  (registers the e2e schema)
from ragdistill.common.config import compose
from ragdistill.common.ops.cost import slot_stages
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.stage import get_stage
from ragdistill.e2e.cli import run_e2e
from ragdistill.e2e.report import compare_runs

# pipeline slot -> the stage filling it, as the harness finds them (Stage.slot of the installed stages)
SLOTS = {slot: stage.name for slot, stage in slot_stages().items()}

# per stage: the overrides its verbs and its pipeline component share (tiny; from each stage's tests)
STAGE_SETTINGS: dict[str, list[str]] = {
    "query_rewriter": ["query_rewriter.teach.rewrite_records=6", "query_rewriter.teach.expansion_data=[scifact]",
                       "query_rewriter.teach.expansion_queries=2", "query_rewriter.train.args.max_steps=1",
                       "query_rewriter.train.args.per_device_train_batch_size=2", "query_rewriter.train.max_source_length=96",
                       "query_rewriter.train.max_target_length=24", "query_rewriter.train.select_best=false",
                       "query_rewriter.export.parity_records=1", "query_rewriter.export.int8=false"],
    "embedder": ["data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
                 "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4",
                 "embedder.train.args.max_steps=2", "embedder.train.args.eval_steps=2", "embedder.train.val_fraction=0.34",
                 "embedder.train.val_max_docs=24", "embedder.train.matryoshka=[]", "embedder.export.parity_texts=8"],
    "reranker": ["teacher.max_length=32", "student.max_length=32", "data.max_queries=8", "reranker.candidates.train_k=5",
                 "reranker.teach.filter.min_margin=-100", "reranker.train.args.max_steps=2", "reranker.train.list_size=5",
                 "reranker.train.queries_per_batch=4", "reranker.train.args.warmup_ratio=0", "reranker.train.colbert.enabled=false",
                 "reranker.export.quantize=false", "reranker.export.parity_pairs=20", "reranker.teach.shipped_labels=[]"],
    "generator": ["teacher.model=smollm2-135m-instruct", "teacher.max_new_tokens=12", "generator.student_max_new_tokens=12",
                  "generator.teach.shipped_labels=[]", "generator.teach.max_train_questions=4", "generator.retrieval.top_k=2",
                  "generator.prompt.max_context_chars=400", "generator.teach.filters.min_grounding=0.0", "generator.train.args.max_steps=2",
                  "generator.train.args.per_device_train_batch_size=2", "generator.train.args.gradient_accumulation_steps=1",
                  "generator.train.args.max_length=384", "generator.train.lora.r=4", "generator.export.int8=false",
                  "generator.export.smoke_test=false", "run.torch_threads=1"],
}
# export's monitor baseline (tested per stage in test_calibrate/test_monitor) is skipped here: it re-runs teachers
for _overrides in STAGE_SETTINGS.values():
    _overrides.append("monitor.baseline_inputs=0")
# the reranker teacher: a cross-encoder fine-tuned from MiniLM by the stage's own build-teacher, a few pairs
CE_RECIPE = ["reranker.build_teacher.base=minilm-l6", "reranker.build_teacher.squad_queries=8", "reranker.build_teacher.negatives=1",
             "reranker.build_teacher.max_length=32", "reranker.build_teacher.freeze_layers=0", "reranker.build_teacher.batch_size=16",
             "reranker.build_teacher.learning_rate=5e-4", "reranker.build_teacher.epochs=1"]
# pipeline-only: the rewriter's teacher is SmolLM2 too (its verbs read the shipped 0.5B teacher labels instead)
PIPELINE_ONLY = {"query_rewriter": ["teacher.model=smollm2-135m-instruct", "query_rewriter.teach.rewrite_max_new_tokens=16"]}
SLICE = ["data.max_queries=3", "data.max_docs=30", "max_generate=1", "retrieval.rerank_k=5", "retrieval.n_contexts=1"]
# RAGAS in the teacher run only: one question, one answer metric and one context metric, short judge replies
RAGAS = ["ragas.enabled=true", "ragas.max_questions=1", "ragas.metrics=[answer_relevancy,context_precision]",
         "ragas.max_new_tokens=32", "ragas.retries=0"]
MODES = ("teacher", "student", "student_onnx")


def _list(items: list[str]) -> str:
    return "[" + ",".join(f"'{x}'" for x in items) + "]"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """One work dir holding every stage's train and export output; returns it and each slot's overrides."""
    assert SLOTS == {"rewriter": "query_rewriter", "embedder": "embedder", "reranker": "reranker", "generator": "generator"}
    work = tmp_path_factory.mktemp("e2e_work")
    base = [f"paths.work_dir={work}", "run.report_to=[]"]
    reranker = get_stage("reranker")
    ce = reranker.build_teacher(compose("reranker", [*base, *CE_RECIPE, f"reranker.build_teacher.output_dir={work / 'ce'}"]))
    settings = dict(STAGE_SETTINGS)
    settings["reranker"] = ["teacher.backend=cross_encoder", f"teacher.model={ce}", *settings["reranker"]]
    for name, overrides in settings.items():
        stage, cfg = get_stage(name), compose(name, [*base, *overrides])
        verbs = stage_verbs(stage)
        for verb in ("teach", "train", "export"):
            verbs[verb](cfg)
    per_slot = {slot: [*settings[stage], *PIPELINE_ONLY.get(stage, [])] for slot, stage in SLOTS.items()}
    return work, per_slot


def _e2e_overrides(work: Path, per_slot: dict[str, list[str]], mode: str) -> list[str]:
    return [f"paths.work_dir={work}", "run.report_to=[]", *SLICE, f"out_dir={work / 'runs' / mode}",
            *(f"pipeline.{slot}={mode}" for slot in SLOTS), *(f"+stage_overrides.{s}={_list(o)}" for s, o in per_slot.items()),
            *(RAGAS if mode == "teacher" else [])]


@pytest.fixture(scope="module")
def runs(artifacts: tuple[Path, dict[str, list[str]]]) -> dict[str, Path]:
    """One e2e run (one report directory) per mode, all from the same artifacts."""
    work, per_slot = artifacts
    return {mode: run_e2e(compose("e2e", _e2e_overrides(work, per_slot, mode))) for mode in MODES}


def _in_unit(x: Any) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


@pytest.mark.parametrize("mode", MODES)
def test_every_stage_runs_and_reports_figures_in_range(runs: dict[str, Path], mode: str) -> None:
    out = runs[mode]
    assert (out / "report.json").is_file() and (out / "report.html").is_file()
    assert (out / "latency_breakdown.png").stat().st_size > 1000
    rep = json.loads((out / "report.json").read_text())
    r = rep["result"]
    assert r["pipeline"] == {slot: mode for slot in SLOTS} and rep["config"]["pipeline"] == r["pipeline"]
    assert r["n_queries"] == 3 and r["n_docs"] == 30
    for stage in ("retrieval", "after_rerank"):
        assert set(r[stage]) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"} and all(_in_unit(v) for v in r[stage].values()), r[stage]
    assert r["retrieval"]["recall@100"] == pytest.approx(1.0)  # 30 docs < 100: the gold passage is always retrieved
    for stage, n in (("rewriter", 3), ("retrieve", 3), ("reranker", 3), ("generator", 1), ("end_to_end", 1)):
        lat = r["latency"][stage]
        assert lat["n_items"] == n and lat["p95_ms"] >= lat["p50_ms"] > 0, (stage, lat)
    g = r["generation"]
    assert g["n_answers"] == 1 and all(_in_unit(g[m]) for m in ("exact_match", "token_f1", "rouge_l", "grounding", "gold_in_contexts"))
    answer = next(iter(r["answers"].values()))
    assert answer["references"] and len(answer["contexts"]) == 1
    c = r["cost"]
    assert c["per_query_s"] > 0 and c["queries_per_s"] == pytest.approx(1 / c["per_query_s"]) and c["usd_per_1k_queries"] > 0
    for slot, f in r["stages"].items():
        assert f["variant"] == mode and f["load_s"] > 0 and f["memory_mb"] >= f["warm_up_mb"] >= 0, (slot, f)
    if mode == "teacher":  # loaded lazily on its first answer: its memory shows in the warm-up call, not at load
        assert r["stages"]["generator"]["warm_up_mb"] > 50, r["stages"]["generator"]
        assert f["size_mb"] and f["size_mb"] > 1, (slot, f)  # each variant's files on disk, measured
    assert r["total_size_mb"] == pytest.approx(sum(f["size_mb"] for f in r["stages"].values()))
    m = r["mteb"]  # MTEB's own evaluator over the index's document vectors: only the queries are encoded again
    assert all(_in_unit(m[k]) for k in ("mteb_ndcg@10", "mteb_mrr@10", "mteb_recall@100"))
    assert (m["texts_from_index"], m["texts_encoded"]) == (30, 3) and Path(m["results_file"]).is_file()
    html = (out / "report.html").read_text()
    assert "<h2>MTEB" in html and "after rerank" in html and "latency_breakdown.png" in html


def test_ragas_rows_from_the_local_judge(runs: dict[str, Path]) -> None:
    """RAGAS through the generator package's judge: each question is scored or counted as failed, never NaN."""
    rep = json.loads((runs["teacher"] / "report.json").read_text())
    rg = rep["result"]["ragas"]
    assert rg["questions"] == 1 and "smollm2-135m-instruct" in rg["judge"]  # the generator stage's teacher judges
    assert set(rg["metrics"]) == {"answer_relevancy", "context_precision"}
    for name, v in rg["metrics"].items():
        assert v["scored"] + v["failed"] == 1, name
        assert (v["mean"] is None) == (v["scored"] == 0) and (v["mean"] is None or 0.0 <= v["mean"] <= 1.0), (name, v)
    assert rg["judge_calls"] >= 2 and rg["judge_failures"] == sum(v["failed"] for v in rg["metrics"].values())
    assert "<h2>RAGAS" in (runs["teacher"] / "report.html").read_text()
    assert "ragas" not in json.loads((runs["student"] / "report.json").read_text())["result"]  # off by default


def test_compare_joins_the_three_modes(runs: dict[str, Path], tmp_path: Path) -> None:
    table = compare_runs([runs[m] for m in MODES], tmp_path / "cmp")
    lines = table.splitlines()
    assert len(lines) == 4 and lines[1].startswith("rewriter=teacher")  # the all-teacher run is the baseline
    assert lines[1].split()[-1] == "1.00x" and (tmp_path / "cmp" / "quality_vs_latency.png").is_file()
    sizes = {m: json.loads((runs[m] / "report.json").read_text())["result"]["stages"]["embedder"]["size_mb"] for m in MODES}
    assert sizes["student"] < sizes["teacher"]  # MiniLM (22M) vs mpnet (110M), as measured on disk

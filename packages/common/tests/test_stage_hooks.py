"""A new stage is one class implementing the hooks: it gets calibrate, routing, the monitor, rounds
and export-labels without writing them.

The stage here is small but real: a lexical reranker. Its teacher is BM25 over the bundled SciFact
corpus (through the label cache like every teacher); its student is a term-overlap scorer whose one
parameter (how strongly rare terms count) is distilled from the teacher's scores on training lists.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragdistill.common.config import StageConfig, TeachConfig, TeacherConfig, compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl, write_json, write_jsonl
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import stage_dir
from ragdistill.common.results import EvaluateResult, ExportResult, TeachResult, TrainResult, Variant
from ragdistill.common.signals import margin
from ragdistill.common.stage import Stage, register
from ragdistill.common.teachers.cached import CachedTeacher

TEMPLATE = "toy-pair:v1"
ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


@dataclass
class ToyTeach(TeachConfig):
    queries: int = 20
    candidates: int = 6


@dataclass
class ToySettings:
    teach: ToyTeach = field(default_factory=ToyTeach)


@dataclass
class ToyConfig(StageConfig):
    toy: ToySettings = field(default_factory=ToySettings)
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(backend="bm25", model="scifact", batch_size=16))


def _terms(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class OverlapScorer:
    """Sum over shared terms of idf ** alpha: alpha 0 counts overlap (the undistilled student)."""

    def __init__(self, idf: dict[str, float], alpha: float) -> None:
        self.idf, self.alpha = idf, alpha

    def __call__(self, query: str, docs: list[str]) -> list[float]:
        q = set(_terms(query))
        return [float(sum(self.idf.get(t, 1.0) ** self.alpha for t in q & set(_terms(d)))) for d in docs]


class ToyStage(Stage):
    name = "toy"
    description = "a lexical reranker distilled from BM25 (test stage)"
    schema = ToyConfig
    call_fields = ("query", "docs")
    signals = ("margin",)
    quality_metric = "reciprocal_rank"

    # ---- nouns
    def data(self, cfg: Any) -> Any:
        from ragdistill.common.data import load_retrieval

        return load_retrieval("scifact")

    def lists(self, cfg: Any, split: str) -> list[dict[str, Any]]:
        data = self.data(cfg)
        queries, qrels = data.split(split)
        terms = {d: set(_terms(doc.full_text)) for d, doc in data.corpus.items()}
        out = []
        for q in sorted(queries)[: cfg.toy.teach.queries]:
            pos = sorted(qrels[q])[0]
            qt = set(_terms(queries[q]))
            # hard negatives: the documents sharing the most query terms, where plain overlap is easily fooled
            others = sorted((d for d in terms if d != pos), key=lambda d: (-len(qt & terms[d]), d))[: cfg.toy.teach.candidates - 1]
            docs = [pos, *others]
            out.append({"id": q, "query": queries[q], "docs": [data.corpus[d].full_text for d in docs], "positive": 0})
        return out

    def idf(self, cfg: Any) -> dict[str, float]:
        data = self.data(cfg)
        df: dict[str, int] = {}
        for d in data.corpus.values():
            for t in set(_terms(d.full_text)):
                df[t] = df.get(t, 0) + 1
        n = len(data.corpus)
        return {t: math.log(1 + n / c) for t, c in df.items()}

    def teacher(self, cfg: Any) -> CachedTeacher:
        return CachedTeacher(cfg, "score", shipped=cfg.toy.teach.shipped_labels)

    def component(self, cfg: Any, variant: str) -> Any:
        if variant == "teacher":
            teacher = self.teacher(cfg)
            return lambda query, docs: [float(s) for s in teacher.labels([[query, d] for d in docs], TEMPLATE)]
        if variant == "student_base":
            return OverlapScorer(self.idf(cfg), 0.0)
        path = self.student_dir(cfg) if variant == "student" else self.export_dir(cfg)
        if not (path / "params.json").is_file():
            raise RagdistillError(f"{path}: no toy student; run `ragdistill toy train` first")
        return OverlapScorer(self.idf(cfg), read_json(path / "params.json")["alpha"])

    def held_out(self, cfg: Any, n: int | None = None) -> list[dict[str, Any]]:
        return self.lists(cfg, cfg.data.test_split)[:n]

    def scorer(self, cfg: Any, signal: str) -> Any:
        student = self.component(cfg, "student")

        def score(records: list[dict[str, Any]]) -> tuple[list[Any], list[float]]:
            outs = [student(r["query"], r["docs"]) for r in records]
            return outs, [margin(o) for o in outs]

        return score

    def quality(self, cfg: Any, records: list[dict[str, Any]], outputs: list[Any]) -> list[float]:
        return [1.0 / (1 + sum(s > o[r["positive"]] for s in o)) for r, o in zip(records, outputs, strict=True)]

    def disagreement(self, record: dict[str, Any], student: Any, teacher: Any) -> float:
        from scipy.stats import kendalltau

        tau = kendalltau(student, teacher).statistic
        return 0.5 if math.isnan(tau) else float((1 - tau) / 2)

    def queue_examples(self, cfg: Any, record: dict[str, Any], teacher_output: Any) -> list[tuple[Any, Any, str]]:
        return [([record["query"], d], s, TEMPLATE) for d, s in zip(record["docs"], teacher_output, strict=True)]

    def add_training_examples(self, cfg: Any, items: list[tuple[Any, Any, str]]) -> dict[str, Any]:
        f = stage_dir(cfg, self.name, "teach") / "train.jsonl"
        rows = read_jsonl(f)
        by_query: dict[str, list[tuple[str, float]]] = {}
        for (q, d), s, _ in items:
            by_query.setdefault(q, []).append((d, float(s)))
        new = [{"query": q, "docs": [d for d, _ in ds], "teacher": [s for _, s in ds]} for q, ds in by_query.items()]
        write_jsonl(f, rows + new)
        return {"lists_added": len(new)}

    # ---- the four verbs
    def teach(self, cfg: Any) -> TeachResult:
        teacher = self.teacher(cfg)
        res = TeachResult(self.name)
        rows = []
        with teacher:
            for r in self.lists(cfg, cfg.data.train_split):
                run = teacher.label([[r["query"], d] for d in r["docs"]], TEMPLATE, complete=True)
                res.count_labels(run)
                rows.append({"query": r["query"], "docs": r["docs"], "teacher": run.labels})
        write_jsonl(stage_dir(cfg, self.name, "teach") / "train.jsonl", rows)
        res.n_items = res.kept = len(rows)
        return res

    def train(self, cfg: Any) -> TrainResult:
        from scipy.stats import spearmanr

        rows = read_jsonl(stage_dir(cfg, self.name, "teach") / "train.jsonl")
        idf = self.idf(cfg)

        def agreement(alpha: float) -> float:
            s = OverlapScorer(idf, alpha)
            return float(np.nanmean([spearmanr(s(r["query"], r["docs"]), r["teacher"]).statistic for r in rows]))

        best = max(ALPHAS, key=agreement)
        write_json(self.student_dir(cfg) / "params.json", {"alpha": best})
        return TrainResult(self.name, n_items=len(rows), train_steps=len(ALPHAS), student=str(self.student_dir(cfg)),
                           details={"alpha": best, "agreement": agreement(best)})

    def export(self, cfg: Any) -> ExportResult:
        params = read_json(self.student_dir(cfg) / "params.json")
        write_json(self.export_dir(cfg) / "params.json", params)
        res = ExportResult(self.name, model=str(self.export_dir(cfg)),
                           variants={"json": Variant(str(self.export_dir(cfg) / "params.json"), 1.0, "identical scores")})
        res.gate(0.99, 0.9)
        return res

    def evaluate(self, cfg: Any) -> EvaluateResult:
        records = self.held_out(cfg)
        results = {}
        for v in ("teacher", "student_base", "student"):
            outs = self.predictor(cfg, v)(records)
            results[v] = {"mrr": float(np.mean(self.quality(cfg, records, outs)))}
        return EvaluateResult(self.name, n_items=len(records), split=cfg.data.test_split, results=results)


@pytest.fixture(scope="module")
def toy() -> ToyStage:
    return register(ToyStage())


def test_a_new_stage_gets_calibrate_routing_monitor_rounds_and_label_export(toy, work_dir, tmp_path):
    from ragdistill.common.ops import routed
    from ragdistill.common.ops.monitor import default_baseline_path, measure

    cfg = compose("toy_schema", [f"paths.work_dir={work_dir}", "run.report_to=[]", "routing.max_teacher_fraction=0.5"])
    verbs = stage_verbs(toy)
    assert {"teach", "train", "export", "evaluate", "calibrate", "next-round", "compare-rounds", "export-labels"} <= set(verbs)

    taught = verbs["teach"](cfg)
    assert taught.teacher_calls == 20 * 6 and taught.cached == 0
    assert json.loads((stage_dir(cfg, "toy", "teach") / "teach.json").read_text())["teacher_calls"] == 120
    assert (stage_dir(cfg, "toy", "teach") / "config.yaml").is_file()  # the config it ran with
    again = verbs["teach"](cfg)
    assert again.teacher_calls == 0 and again.cached == 120  # the second teach is a cache read

    trained = verbs["train"](cfg)
    assert trained.details["alpha"] > 0  # distillation chose to weigh rare terms, as BM25 does
    exported = verbs["export"](cfg)
    base = read_json(default_baseline_path(cfg, "toy"))  # the monitor baseline, written by the shared export step
    assert base["metrics"]["n"] == 8 and 0 <= base["divergence"] < 0.5
    assert exported.details["monitor_baseline"]["divergence"] == base["divergence"]
    res = verbs["evaluate"](cfg).results
    assert res["student"]["mrr"] > res["student_base"]["mrr"]  # distillation gains over the undistilled student

    # calibrate: written once in ops, on the hooks
    cal = verbs["calibrate"](cfg)
    assert cal["n"] == 20 and cal["signal"] == "margin" and cal["teacher_fraction"] <= 0.5
    assert cal["quality"] >= cal["student_quality"] - 1e-12
    items = read_jsonl(stage_dir(cfg, "toy", "calibrate") / "items.jsonl")
    assert len(items) == 20 and sum(i["routed"] for i in items) == round(cal["teacher_fraction"] * 20)

    # routed: the student answers, the teacher below the calibrated threshold; routed inputs are queued
    comp = routed(toy, cfg)
    records = toy.held_out(cfg)
    for r in records:
        assert len(comp(r["query"], r["docs"])) == len(r["docs"])
    stats = comp.stats()
    assert stats["n_calls"] == 20 and stats["n_teacher_calls"] == sum(i["routed"] for i in items)
    queue = read_jsonl(work_dir / "toy" / "queue.jsonl")
    assert queue and {q["reason"] for q in queue} <= {"routed", "disagreement"}

    # monitor: the same measure on a live log, drift reported against the baseline
    log = tmp_path / "live.jsonl"
    write_jsonl(log, [{"query": r["query"], "docs": r["docs"]} for r in records[:5]])
    from ragdistill.common.ops.monitor import monitor_command

    with pytest.raises(SystemExit) as e:  # a negative margin makes any divergence drift
        monitor_command(["toy", "--log", str(log), "--margin", "0", f"paths.work_dir={work_dir}", "--baseline",
                         str(tmp_path / "zero.json")])
    assert e.value.code == 2  # no such baseline: a clear error
    write_json(tmp_path / "zero.json", {"divergence": -1.0})
    with pytest.raises(SystemExit) as e:
        monitor_command(["toy", "--log", str(log), "--margin", "0", f"paths.work_dir={work_dir}", "--baseline", str(tmp_path / "zero.json")])
    assert e.value.code == 1  # drift
    assert measure(toy, cfg, [{"query": r["query"], "docs": r["docs"]} for r in records[:5]])["n"] == 5

    # rounds: keep round 1, fold the queue into the next teach (labels from the cache), compare
    kept = verbs["next-round"](cfg)
    assert (kept / "student" / "params.json").is_file()
    cfg_q = compose("toy_schema", [f"paths.work_dir={work_dir}", "run.report_to=[]", "data.extra=queue"])
    folded = verbs["teach"](cfg_q)
    assert folded.details["queue"]["lists_added"] >= 1 and folded.details["queue"]["teacher_labels"]["labelled"] == 0
    verbs["train"](cfg_q)
    verbs["evaluate"](cfg_q)
    cmp = verbs["compare-rounds"](cfg)
    assert cmp["columns"] == ["teacher", "round 1", "round 2"]

    # export-labels: the teacher's cached labels as a shippable file, imported once by another cache
    target = tmp_path / "toy-labels.jsonl.gz"
    out = verbs["export-labels"](compose("toy_schema", [f"paths.work_dir={work_dir}", f"toy.teach.export_labels_to={target}"]))
    assert out == target
    assert Path(out).is_file()
    fresh = compose("toy_schema", [f"paths.work_dir={tmp_path / 'other'}", f"toy.teach.shipped_labels=[{out}]"])
    t = toy.teacher(fresh)
    assert t.cache.import_file(out) == 0  # opened once already: the file is not read again
    assert len(t.cache) >= 120
    t.close()
    assert toy.teacher(fresh).label([[records[0]["query"], records[0]["docs"][0]]], TEMPLATE).labelled == 0


def test_export_gate_names_the_variant_below_the_bar():
    res = ExportResult("toy", model="/x", variants={"fp32": Variant("/x/a", 1.0, "cosine"),
                                                     "int8": Variant("/x/b", 0.95, "cosine", quantized=True)})
    res.gate(0.99, 0.9)  # passes: the quantized variant is held to its own bar
    with pytest.raises(RagdistillError, match=r"int8 cosine 0\.9500 < 0\.97"):
        res.gate(0.99, 0.97)
    assert res.details["gate"]["failed"] == ["int8 cosine 0.9500 < 0.97"]


def test_a_second_run_on_the_same_work_dir_and_stage_is_refused(toy, work_dir):
    from ragdistill.common.ops.verbs import stage_lock

    cfg = compose("toy_schema", [f"paths.work_dir={work_dir}", "run.report_to=[]", "toy.teach.queries=2"])
    with stage_lock(cfg, "toy", "teach"):  # a teach already running there
        with pytest.raises(RagdistillError, match=r"toy: ragdistill toy teach \(pid \d+\) is running there now; wait for it"):
            stage_verbs(toy)["train"](cfg)
    assert stage_verbs(toy)["teach"](cfg).n_items == 2  # free again once it ends


def test_every_result_records_its_config_and_versions(toy, work_dir):
    """run_verb writes the provenance of each result: the resolved config, library versions, git commit."""
    from ragdistill.common.results import mismatches

    cfg = compose("toy_schema", [f"paths.work_dir={work_dir}", "run.report_to=[]", "toy.teach.queries=2"])
    stage_verbs(toy)["teach"](cfg)
    prov = read_json(stage_dir(cfg, "toy", "teach") / "teach.json")["provenance"]
    assert prov["config"]["toy"]["teach"]["queries"] == 2 and prov["config"]["data"]["name"] == "scifact"
    assert "torch" in prov["versions"] and "ragdistill-common" in prov["versions"] and "git_commit" in prov
    other = {**prov, "config": {**prov["config"], "data": {**prov["config"]["data"], "max_queries": 7}}}
    assert mismatches(prov, prov) == [] and mismatches(prov, other) == ["data.max_queries: 7 vs None"]
    assert mismatches(prov, {}) == ["no config recorded (a result from before provenance was written): rerun the verb"]

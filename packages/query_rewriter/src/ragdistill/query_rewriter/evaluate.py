"""evaluate: teacher vs undistilled student vs distilled student (+ ONNX exports), one run, held out.

Rewrites: the first ``evaluate.test_records`` answerable records of the CANARD test split (never
taught), scored by BM25 first-stage retrieval over the derived answer-span corpus
(canard_corpus.py): Recall@10/100, NDCG@10 and the recall lift over the raw question, plus exact
match and BLEU against the human rewrites. Reference rows beside the systems: the raw question
(lift 0 by definition), the title + section + question concatenation (a strong trivial baseline)
and the human rewrite. Expansions: union retrieval (original query + reformulations, fused by
RRF) on the test queries of ``evaluate.expansion_data``. Latency: p50/p95 per query at batch 1.

Writes ``<work_dir>/query_rewriter/evaluate/results.json`` (+ ``results.txt``, ``outputs.jsonl``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.report import write_comparison
from ragdistill.common.timing import measure
from ragdistill.query_rewriter.examples import RewriteEvalSet, expansion_queries, teacher_prompt, test_set
from ragdistill.query_rewriter.filters import FilterConfig, check_expansion
from ragdistill.query_rewriter.prompts import Example
from ragdistill.query_rewriter.retrieval import BM25Retriever
from ragdistill.query_rewriter.scoring import (
    RETRIEVAL_METRICS,
    bleu,
    exact_match,
    expansion_variants,
    retrieval_metrics,
    rewrite_queries,
    with_lift,
)

log = get_logger(__name__)
STAGE = "query_rewriter"
Generate = Callable[[list[Example]], list[str]]


class Bench:
    """The held-out sets and their retrievers, built once and shared by every system."""

    def __init__(self, cfg: Any) -> None:
        ev = cfg.query_rewriter.evaluate
        self.rw: RewriteEvalSet = test_set(cfg)
        self.rw_retriever = BM25Retriever(self.rw.data.corpus)
        self.rw_qrels = self.rw.data.qrels[self.rw.split]
        self.rw_raw = retrieval_metrics(self.rw_retriever, self.rw_qrels, {r.id: r.question for r in self.rw.records})
        self.exp: list[tuple[str, BM25Retriever, dict, list[Example], dict[str, float]]] = []
        for name in ev.expansion_data:
            data, exs = expansion_queries(name, cfg.data.test_split if name == cfg.data.name else "test", int(ev.expansion_queries))
            qrels = {e.id: data.qrels["test"][e.id.split(":", 1)[1]] for e in exs}
            retr = BM25Retriever(data.corpus)
            raw = evaluate_run(qrels, retr.search_union({e.id: [e.question] for e in exs}), RETRIEVAL_METRICS)
            self.exp.append((name, retr, qrels, exs, raw))

    @property
    def examples(self) -> list[Example]:
        return self.rw.examples + [e for _, _, _, exs, _ in self.exp for e in exs]

    def score(self, outputs: list[str]) -> dict[str, float]:
        """Metrics of one system from its outputs (aligned with :attr:`examples`)."""
        n = len(self.rw.examples)
        rw_out, rest = outputs[:n], outputs[n:]
        ids = [r.id for r in self.rw.records]
        m = with_lift(retrieval_metrics(self.rw_retriever, self.rw_qrels, rewrite_queries(ids, rw_out, [r.question for r in self.rw.records])), self.rw_raw)
        m["exact_match"] = exact_match(rw_out, [r.rewrite for r in self.rw.records])
        m["bleu"] = bleu(rw_out, [r.rewrite for r in self.rw.records])
        for name, retr, qrels, exs, raw in self.exp:
            outs, rest = rest[: len(exs)], rest[len(exs) :]
            run = retr.search_union({e.id: expansion_variants(e.question, o) for e, o in zip(exs, outs, strict=True)})
            em = evaluate_run(qrels, run, RETRIEVAL_METRICS)
            m[f"{name}_expansion_recall@100"] = em["recall@100"]
            m[f"{name}_expansion_ndcg@10"] = em["ndcg@10"]
            m[f"{name}_expansion_recall_lift@100"] = em["recall@100"] - raw["recall@100"]
            m[f"{name}_expansion_valid"] = sum(check_expansion(e, o, FilterConfig())[0] is None for e, o in zip(exs, outs, strict=True)) / max(len(exs), 1)
        return m

    def reference_rows(self) -> dict[str, dict[str, float]]:
        recs = self.rw.records
        rows = {
            "ref:raw_question": {r.id: r.question for r in recs},
            "ref:title_section_question": {r.id: " ".join([*r.history[:2], r.question]) for r in recs},
            "ref:human_rewrite": {r.id: r.rewrite or r.question for r in recs},
        }
        return {k: with_lift(retrieval_metrics(self.rw_retriever, self.rw_qrels, q), self.rw_raw) for k, q in rows.items()}


def _latency(gen: Generate, examples: list[Example], n: int) -> dict[str, float]:
    if n <= 0:
        return {}
    st = measure(lambda batch: gen(list(batch)), examples[:n], batch_size=1, warmup=1)
    return {"latency_p50_ms": st.p50_ms, "latency_p95_ms": st.p95_ms}


def system_generators(cfg: Any, systems: list[str]) -> dict[str, Callable[[], Generate]]:
    """Lazy constructors: a system's model is only loaded when it is scored."""
    from ragdistill.query_rewriter.student import load_student, load_student_onnx

    msl = int(cfg.query_rewriter.train.max_source_length)
    bs = int(cfg.query_rewriter.evaluate.batch_size)
    train_model = stage_dir(cfg, STAGE, "train") / "model"
    export_dir = stage_dir(cfg, STAGE, "export")

    def loaded(load: Callable[[], Any]) -> Callable[[], Generate]:
        def make() -> Generate:
            rewriter = load()
            return lambda exs: rewriter.generate(exs, batch_size=bs)

        return make

    def student(path: str) -> Callable[[], Generate]:
        return loaded(lambda: load_student(path, msl, int(cfg.run.seed)))

    def onnx(path: Any) -> Callable[[], Generate]:
        return loaded(lambda: load_student_onnx(path, msl))

    out: dict[str, Callable[[], Generate]] = {}
    for s in systems:
        if s == "teacher":
            continue  # handled apart: labels through the cache, latency on the live model
        if s == "student_base":
            out[s] = student(cfg.student.model)
        elif s == "student":
            if not (train_model / "config.json").exists():
                raise RagdistillError(f"{train_model}: no trained student; run `ragdistill query_rewriter train` first")
            out[s] = student(str(train_model))
        elif s in ("student_onnx", "student_onnx_int8"):
            d = export_dir / s.removeprefix("student_")
            if not d.is_dir():
                log.warning("%s: no export at %s, skipped (run `ragdistill query_rewriter export`)", s, d)
                continue
            out[s] = onnx(d)
        else:
            raise RagdistillError(f"query_rewriter.evaluate.systems has unknown system {s!r}; use teacher, student_base, student, student_onnx, student_onnx_int8")
    return out


def evaluate(cfg: Any) -> dict[str, Any]:
    from ragdistill.query_rewriter.teach import LazyTeacher, open_cache, teacher_outputs

    ev = cfg.query_rewriter.evaluate
    out_dir = stage_dir(cfg, STAGE, "evaluate")
    bench = Bench(cfg)
    examples = bench.examples
    n_lat = int(ev.latency_queries)
    results: dict[str, dict[str, float]] = {}
    outputs: dict[str, list[str]] = {}
    systems = list(ev.systems)
    if "teacher" in systems:
        teacher = LazyTeacher(cfg.teacher)
        cache = open_cache(cfg)
        try:
            outs = teacher_outputs(cfg, examples, cache, teacher, desc="teacher (held-out)")
        finally:
            cache.close()
        outputs["teacher"] = [o or "" for o in outs]
        results["teacher"] = bench.score(outputs["teacher"])
        if n_lat > 0 and ev.teacher_latency:
            from ragdistill.query_rewriter.teach import max_new_tokens

            prompt = teacher_prompt(cfg)

            def teacher_gen(exs: list[Example]) -> list[str]:
                return teacher.get().generate([prompt.messages(e) for e in exs], max_new_tokens=max_new_tokens(cfg, exs[0].task))

            results["teacher"].update(_latency(teacher_gen, bench.rw.examples, n_lat))
    for name, make in system_generators(cfg, systems).items():
        log.info("scoring %s on %d held-out inputs", name, len(examples))
        gen = make()
        outputs[name] = gen(examples)
        results[name] = bench.score(outputs[name])
        results[name].update(_latency(gen, bench.rw.examples, n_lat))
    parity_file = stage_dir(cfg, STAGE, "export") / "parity.json"
    if parity_file.exists():
        par = read_json(parity_file)
        for v in ("onnx", "onnx_int8"):
            if f"student_{v}" in results and v in par:
                results[f"student_{v}"]["parity"] = par[v]["parity"]
    results.update(bench.reference_rows())
    rows = [{"id": e.id, "task": e.task, "source": e.source, "reference": e.reference, **{s: o[i] for s, o in outputs.items()}}
            for i, e in enumerate(examples)]
    write_jsonl(out_dir / "outputs.jsonl", rows)
    extra = {"test_records": len(bench.rw.records), "corpus_docs": len(bench.rw.data.corpus),
             "expansion_queries": {name: len(exs) for name, _, _, exs, _ in bench.exp},
             "note": "ref:* rows are reference queries, not systems: raw question (lift 0), title+section+question, human rewrite"}
    return write_comparison(out_dir, STAGE, results, extra)

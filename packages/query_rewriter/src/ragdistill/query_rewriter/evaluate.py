"""evaluate: teacher vs undistilled student vs distilled student (+ ONNX exports), one run, held out.

Rewrites: the first ``evaluate.test_records`` answerable records of the CANARD test split (never
taught), scored by BM25 first-stage retrieval over the derived answer-span corpus
(common.data.derive_answer_corpus): Recall@10/100, NDCG@10 and the recall lift over the raw question, plus exact
match and BLEU against the human rewrites. Reference rows beside the systems: the raw question
(lift 0 by definition), the title + section + question concatenation (a strong trivial baseline)
and the human rewrite. Expansions: union retrieval (original query + reformulations, fused by
RRF) on the test queries of ``evaluate.expansion_data``. Latency: p50/p95 per query at batch 1.

Teacher outputs come through the label cache (the keys ``teach`` uses; the shipped labels cover the
defaults). Returns the evaluate result (``results.json``: systems and reference rows side by side);
writes ``results.txt`` (the printed table) and ``outputs.jsonl`` (every system's output per input).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_jsonl, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.paths import stage_dir
from ragdistill.common.report import comparison_table
from ragdistill.common.results import EvaluateResult, ExportResult
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
    """Lazy constructors: a system's model is only loaded when it is scored. A missing trained
    student is an error; a missing export is skipped with a warning (evaluate before export)."""
    from ragdistill.query_rewriter.student import load_system, system_path

    bs = int(cfg.query_rewriter.evaluate.batch_size)

    def make(system: str) -> Callable[[], Generate]:
        def build() -> Generate:
            rewriter, _ = load_system(cfg, system)
            return lambda exs: rewriter.generate(exs, batch_size=bs)

        return build

    out: dict[str, Callable[[], Generate]] = {}
    for s in systems:
        if s == "teacher":
            continue  # handled apart: labels through the cache, latency on the live model
        path = system_path(cfg, s)
        if s == "student" and not (path / "config.json").exists():
            raise RagdistillError(f"{path}: no trained student; run `ragdistill query_rewriter train` first")
        if s == "student_onnx_int8" and not cfg.query_rewriter.export.int8:
            log.info("%s: skipped (query_rewriter.export.int8=false writes no int8 copy)", s)
            continue
        if s.startswith("student_onnx") and not (path / "config.json").exists():
            log.warning("%s: no export at %s, skipped (run `ragdistill query_rewriter export`)", s, path)
            continue
        out[s] = make(s)
    return out


def _export_parity(cfg: Any) -> dict[str, float]:
    """Each exported variant's parity, from the export result (none before export)."""
    path = stage_dir(cfg, STAGE, "export") / ExportResult.FILE
    if not path.is_file():
        return {}
    variants = ExportResult.read(cfg, STAGE).variants
    return {f"student_{name}": float(v["parity"]) for name, v in variants.items()}


def evaluate(cfg: Any) -> EvaluateResult:
    from ragdistill.query_rewriter.labels import cached_teacher, max_new_tokens, teacher_outputs

    ev = cfg.query_rewriter.evaluate
    out_dir = stage_dir(cfg, STAGE, "evaluate")
    bench = Bench(cfg)
    examples = bench.examples
    n_lat = int(ev.latency_queries)
    result = EvaluateResult(STAGE, n_items=len(examples), split=str(cfg.data.test_split))
    results: dict[str, dict[str, float]] = {}
    outputs: dict[str, list[str]] = {}
    systems = [str(s) for s in ev.systems]
    if "teacher" in systems:
        with cached_teacher(cfg) as teacher:
            outs, runs = teacher_outputs(cfg, teacher, examples, desc="teacher (held-out)")
            for run in runs.values():
                result.count_labels(run)
            outputs["teacher"] = [o or "" for o in outs]
            results["teacher"] = bench.score(outputs["teacher"])
            if n_lat > 0 and ev.teacher_latency:
                prompt = teacher_prompt(cfg)

                def teacher_gen(exs: list[Example]) -> list[str]:  # the live model, not the cache
                    return teacher.generate([prompt.messages(e) for e in exs], max_new_tokens=max_new_tokens(cfg, exs[0].task))

                results["teacher"].update(_latency(teacher_gen, bench.rw.examples, n_lat))
    for name, make in system_generators(cfg, systems).items():
        log.info("scoring %s on %d held-out inputs", name, len(examples))
        gen = make()
        outputs[name] = gen(examples)
        results[name] = bench.score(outputs[name])
        results[name].update(_latency(gen, bench.rw.examples, n_lat))
    for name, rate in _export_parity(cfg).items():
        if name in results:
            results[name]["parity"] = rate
    results.update(bench.reference_rows())
    rows = [{"id": e.id, "task": e.task, "source": e.source, "reference": e.reference, **{s: o[i] for s, o in outputs.items()}}
            for i, e in enumerate(examples)]
    write_jsonl(out_dir / "outputs.jsonl", rows)
    table = comparison_table(results, title=f"[{STAGE}] teacher vs student, before and after distillation")
    print(table, flush=True)
    write_text_atomic(out_dir / "results.txt", table + "\n")
    result.results = results
    result.details = {"test_records": len(bench.rw.records), "corpus_docs": len(bench.rw.data.corpus),
                      "expansion_queries": {name: len(exs) for name, _, _, exs, _ in bench.exp},
                      "note": "ref:* rows are reference queries, not systems: raw question (lift 0), title+section+question, human rewrite"}
    return result

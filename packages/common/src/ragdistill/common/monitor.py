"""Fidelity and drift: how far the student has moved from the teacher on live inputs.

``ragdistill monitor <stage> --log live.jsonl`` samples logged inputs, runs the stage's student and
teacher on them (or reads the student's output where the log has it), measures their divergence
with the stage's function from :data:`DIVERGENCES`, and compares it with the baseline measured on
held-out data when the student was exported. Divergence above baseline + margin exits 1 with a
message saying so, so a scheduler can trigger the next round (``teach data.extra=queue``, ``train``).

A divergence function is registered per stage (:func:`register_divergence`); it is built from the
two pipeline components (ragdistill.common.pipeline contracts) and returns metrics plus one
``divergence`` number in [0, 1], higher = further apart:

- embedder: 1 - the correlation of student and teacher query-to-document score profiles over a
  reference corpus (any widths), with the top-10 overlap of their retrievals and, when the student
  shares the teacher's space (same width), the cosine of their query vectors;
- reranker: (1 - Kendall tau) / 2 of student vs teacher scores over each logged candidate list;
- generator: 1 - ROUGE-L agreement of student and teacher answers;
- query_rewriter: 1 - ROUGE-L agreement of student and teacher rewrites.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import iter_jsonl, read_json, write_json
from ragdistill.common.logging import get_logger

log = get_logger(__name__)

BASELINE_FILE = "monitor_baseline.json"
DRIFT_EXIT_CODE = 1

Records = list[dict[str, Any]]
DivergenceFn = Callable[[Records], dict[str, float]]


@dataclass(frozen=True)
class DivergenceSpec:
    """How to measure one stage: ``make(student, teacher, context) -> fn(records) -> metrics``;
    ``fields`` each log line must have; ``context`` holds what the stage needs beyond the two
    components (the embedder's reference corpus texts under ``corpus``)."""

    make: Callable[[Any, Any, dict[str, Any]], DivergenceFn]
    fields: tuple[str, ...]
    needs_corpus: bool = False


DIVERGENCES: dict[str, DivergenceSpec] = {}


def register_divergence(stage: str, make: Callable[[Any, Any, dict[str, Any]], DivergenceFn], fields: Sequence[str],
                        needs_corpus: bool = False) -> None:
    """Plug a stage into ``ragdistill monitor`` (a stage may replace the built-in function)."""
    DIVERGENCES[stage] = DivergenceSpec(make, tuple(fields), needs_corpus)


def _rows_normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class EmbedderDivergence:
    """Student vs teacher encoders on queries, against a fixed reference corpus (embedded once)."""

    def __init__(self, student: Any, teacher: Any, corpus: Sequence[str], k: int = 10, batch_size: int = 64) -> None:
        if len(corpus) < k:
            raise RagdistillError(f"embedder monitor: the reference corpus has {len(corpus)} documents, need at least k={k}")
        self.student, self.teacher, self.k = student, teacher, k
        self.s_docs = self._encode(student, list(corpus), False, batch_size)
        self.t_docs = self._encode(teacher, list(corpus), False, batch_size)

    @staticmethod
    def _encode(enc: Any, texts: list[str], is_query: bool, batch_size: int) -> np.ndarray:
        return _rows_normalised(np.concatenate([enc(texts[i:i + batch_size], is_query=is_query) for i in range(0, len(texts), batch_size)]))

    def __call__(self, records: Records) -> dict[str, float]:
        queries = [r["query"] for r in records]
        s_q, t_q = self._encode(self.student, queries, True, 64), self._encode(self.teacher, queries, True, 64)
        s_sc, t_sc = s_q @ self.s_docs.T, t_q @ self.t_docs.T
        k = self.k
        s_top = np.argsort(-s_sc, axis=1)[:, :k]
        t_top = np.argsort(-t_sc, axis=1)[:, :k]
        overlap = np.array([len(set(a) & set(b)) / k for a, b in zip(s_top, t_top, strict=True)])
        sc = s_sc - s_sc.mean(1, keepdims=True)
        tc = t_sc - t_sc.mean(1, keepdims=True)
        corr = (sc * tc).sum(1) / np.maximum(np.linalg.norm(sc, axis=1) * np.linalg.norm(tc, axis=1), 1e-12)
        # the primary figure: 1 - correlation of the two models' score profiles over the corpus. It
        # compares any widths, uses every document (steadier on a small sample than the top-k overlap)
        out = {f"top{k}_overlap": float(overlap.mean()), "score_profile_corr": float(corr.mean()),
               "divergence": float(1 - corr.mean())}
        if s_q.shape[1] == t_q.shape[1]:  # a student distilled into the teacher's space
            out["cosine"] = float((s_q * t_q).sum(1).mean())
        return out


def _embedder(student: Any, teacher: Any, ctx: dict[str, Any]) -> DivergenceFn:
    return EmbedderDivergence(student, teacher, ctx["corpus"], k=int(ctx.get("k", 10)))


def _reranker(student: Any, teacher: Any, ctx: dict[str, Any]) -> DivergenceFn:
    from scipy.stats import kendalltau

    def fn(records: Records) -> dict[str, float]:
        taus = []
        for r in records:
            s = r.get("student_scores") or student(r["query"], r["docs"])
            t = teacher(r["query"], r["docs"])
            tau = kendalltau(s, t).statistic if len(r["docs"]) > 1 else 1.0
            taus.append(0.0 if np.isnan(tau) else float(tau))
        tau = float(np.mean(taus))
        return {"kendall_tau": tau, "divergence": (1 - tau) / 2}

    return fn


def _text_agreement(student_key: str, call: Callable[[Any, dict[str, Any]], str]) -> Callable[[Any, Any, dict[str, Any]], DivergenceFn]:
    def make(student: Any, teacher: Any, ctx: dict[str, Any]) -> DivergenceFn:
        from ragdistill.common.answer_metrics import rouge_l, token_f1

        def fn(records: Records) -> dict[str, float]:
            rl, f1 = [], []
            for r in records:
                s = r.get(student_key) if r.get(student_key) is not None else call(student, r)
                t = call(teacher, r)
                rl.append(rouge_l(s, [t]))
                f1.append(token_f1(s, [t]))
            return {"rouge_l_agreement": float(np.mean(rl)), "token_f1_agreement": float(np.mean(f1)),
                    "divergence": float(1 - np.mean(rl))}

        return fn

    return make


register_divergence("embedder", _embedder, ("query",), needs_corpus=True)
register_divergence("reranker", _reranker, ("query", "docs"))
register_divergence("generator", _text_agreement("answer", lambda c, r: c(r["question"], r.get("contexts") or [])), ("question",))
register_divergence("query_rewriter", _text_agreement("rewrite", lambda c, r: c(r.get("history") or [], r["question"])), ("question",))


def read_log(path: str | Path, stage: str, sample: int | None = None, seed: int = 0) -> Records:
    """Logged inputs (one JSON object a line); a malformed line or a missing field names the line."""
    if stage not in DIVERGENCES:
        raise RagdistillError(f"monitor: no divergence function for stage {stage!r}; known: {', '.join(DIVERGENCES)}")
    fields = DIVERGENCES[stage].fields
    rows = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise RagdistillError(f"{path}:{lineno}: expected a JSON object with {', '.join(fields)}")
        missing = [f for f in fields if f not in obj]
        if missing:
            raise RagdistillError(f"{path}:{lineno}: a {stage} log line needs {', '.join(repr(f) for f in fields)}; "
                                  f"missing {', '.join(missing)}")
        rows.append(obj)
    if not rows:
        raise RagdistillError(f"{path}: the log has no inputs")
    if sample and len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    return rows


def measure(stage: str, records: Records, student: Any, teacher: Any, context: dict[str, Any] | None = None,
            fn: DivergenceFn | None = None) -> dict[str, float]:
    """Divergence metrics of ``records``; pass ``fn`` (from :func:`divergence_fn`) to reuse a built one."""
    fn = fn or divergence_fn(stage, student, teacher, context)
    out = fn(records)
    out["n"] = len(records)
    return out


def divergence_fn(stage: str, student: Any, teacher: Any, context: dict[str, Any] | None = None) -> DivergenceFn:
    if stage not in DIVERGENCES:
        raise RagdistillError(f"monitor: no divergence function for stage {stage!r}; known: {', '.join(DIVERGENCES)}")
    spec = DIVERGENCES[stage]
    ctx = dict(context or {})
    if spec.needs_corpus and not ctx.get("corpus"):
        raise RagdistillError(f"monitor {stage}: needs a reference corpus (context['corpus'] = document texts)")
    return spec.make(student, teacher, ctx)


def baseline_payload(stage: str, metrics: dict[str, float], source: str, context_info: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"stage": stage, "divergence": metrics["divergence"], "metrics": metrics, "source": source,
            "context": context_info or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def check(stage: str, metrics: dict[str, float], baseline: dict[str, Any], margin: float) -> tuple[bool, str]:
    """(drifted, message): drifted when divergence > baseline divergence + margin."""
    d, b = float(metrics["divergence"]), float(baseline["divergence"])
    detail = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("divergence", "n") and isinstance(v, float))
    if d > b + margin:
        return True, (f"[{stage}] DRIFT: student-teacher divergence {d:.4f} exceeds the baseline {b:.4f} + margin {margin:.4f} "
                      f"on {metrics.get('n')} sampled inputs ({detail}); retrain: ragdistill {stage} teach data.extra=queue, then train")
    return False, (f"[{stage}] ok: student-teacher divergence {d:.4f} within the baseline {b:.4f} + margin {margin:.4f} "
                   f"on {metrics.get('n')} sampled inputs ({detail})")


def default_baseline_path(cfg: Any, stage: str) -> Path:
    """``<work_dir>/<stage>/export/monitor_baseline.json`` (written when the student is exported)."""
    from ragdistill.common.config import stage_dir

    return stage_dir(cfg, stage, "export") / BASELINE_FILE


def _reference_corpus(cfg: Any, n_docs: int, seed: int) -> tuple[list[str], dict[str, Any]]:
    from ragdistill.common.data import load_retrieval

    data = load_retrieval(cfg.data.path or cfg.data.name, max_docs=n_docs)
    ids = sorted(data.corpus)
    random.Random(seed).shuffle(ids)
    ids = sorted(ids[:n_docs])
    return [data.corpus[i].full_text for i in ids], {"corpus": data.name, "n_docs": len(ids), "first_doc_ids": ids[:5]}


def write_baseline(cfg: Any, stage: str, records: Records, student: Any, teacher: Any, path: str | Path | None = None,
                   corpus_docs: int = 500, seed: int = 0, source: str = "held-out") -> dict[str, Any]:
    """What a stage's ``export`` calls with held-out inputs: measure and store the baseline."""
    ctx, info = {}, {}
    if DIVERGENCES[stage].needs_corpus:
        ctx["corpus"], info = _reference_corpus(cfg, corpus_docs, seed)
    payload = baseline_payload(stage, measure(stage, records, student, teacher, ctx), source, info)
    write_json(path or default_baseline_path(cfg, stage), payload)
    return payload


def monitor_command(argv: list[str]) -> None:
    p = argparse.ArgumentParser(
        prog="ragdistill monitor",
        description="Student-teacher divergence on logged live inputs vs the baseline stored at export; exits 1 on drift.")
    p.add_argument("stage", help=f"one of {', '.join(DIVERGENCES)}")
    p.add_argument("--log", required=True, type=Path, help="JSONL of live inputs (embedder: {query}; reranker: {query, docs}; "
                   "generator: {question, contexts[, answer]}; query_rewriter: {history, question[, rewrite]})")
    p.add_argument("--baseline", type=Path, default=None, help="baseline JSON (default <work_dir>/<stage>/export/monitor_baseline.json)")
    p.add_argument("--margin", type=float, default=0.1, help="allowed divergence above the baseline (default 0.1)")
    p.add_argument("--sample", type=int, default=200, help="inputs sampled from the log (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--student", default="student", help="student variant: student (default), student_onnx or student_base")
    p.add_argument("--corpus-docs", type=int, default=500, help="embedder: reference documents from the stage's data (default 500)")
    p.add_argument("--write-baseline", action="store_true", help="measure the log and store it as the baseline instead of checking")
    p.add_argument("--out", type=Path, default=None, help="also write the measurement as JSON here")
    p.add_argument("overrides", nargs="*", help="stage config overrides, e.g. paths.work_dir=work")
    a = p.parse_intermixed_args(argv)
    try:
        code, msg = run_monitor(a)
    except RagdistillError as e:
        print(f"ragdistill: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(msg, flush=True)
    if code:
        sys.exit(code)


monitor_command.description = "student-teacher divergence on a live-input log vs the export-time baseline; exit 1 on drift"


def run_monitor(a: argparse.Namespace) -> tuple[int, str]:
    from ragdistill.common.config import compose
    from ragdistill.common.stage import get_stage

    if a.margin < 0:
        raise RagdistillError(f"--margin {a.margin}: must be >= 0")
    records = read_log(a.log, a.stage, a.sample, a.seed)  # bad input fails before any model loads
    cfg = compose(a.stage, ["run.report_to=[]", *a.overrides])
    baseline_path = a.baseline or default_baseline_path(cfg, a.stage)
    baseline = None
    if not a.write_baseline:
        if not Path(baseline_path).exists():
            raise RagdistillError(f"{baseline_path}: no monitor baseline; the stage's export writes it, or run "
                                  f"`ragdistill monitor {a.stage} --log HELD_OUT.jsonl --write-baseline`")
        baseline = read_json(baseline_path)
        if "divergence" not in baseline:
            raise RagdistillError(f"{baseline_path}: not a monitor baseline (no 'divergence'); rewrite it with --write-baseline")
    stage = get_stage(a.stage)
    if stage.component is None:
        raise RagdistillError(f"stage {a.stage!r} offers no pipeline component to monitor")
    student, teacher = stage.component(cfg, a.student), stage.component(cfg, "teacher")
    ctx, info = {}, {}
    if DIVERGENCES[a.stage].needs_corpus:
        ctx["corpus"], info = _reference_corpus(cfg, a.corpus_docs, a.seed)
        if baseline and baseline.get("context") and baseline["context"] != info:
            log.warning("the reference corpus differs from the baseline's (%s vs %s): divergences may not compare", info, baseline["context"])
    metrics = measure(a.stage, records, student, teacher, ctx)
    if a.out:
        write_json(a.out, {"stage": a.stage, "log": str(a.log), "metrics": metrics, "baseline": baseline, "margin": a.margin})
    if a.write_baseline:
        write_json(baseline_path, baseline_payload(a.stage, metrics, str(a.log), info))
        return 0, f"[{a.stage}] baseline written to {baseline_path}: divergence {metrics['divergence']:.4f} on {metrics['n']} inputs"
    drifted, msg = check(a.stage, metrics, baseline, a.margin)
    return (DRIFT_EXIT_CODE if drifted else 0), msg

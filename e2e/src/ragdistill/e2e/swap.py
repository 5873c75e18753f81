"""``ragdistill e2e swap=matrix``: what swapping each stage costs *in the pipeline*.

A team deciding which stage to distill first needs, per stage, the answer quality it loses and the
time it saves when that stage alone runs its student (or its export) while every other stage keeps
its teacher. The matrix runs the all-teacher pipeline, then each active slot alone swapped to each
of ``swap_variants``, then the all-student pipeline, on the same held-out queries (components are
loaded once and shared between runs; each run writes its own report directory, so a run that dies
loses nothing already measured). ``matrix.txt`` / ``matrix.json`` / ``matrix.html`` attribute the
quality lost and the latency gained to each swap; ``swap_matrix.png`` shows both side by side.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.e2e.report import CSS, _table, write_report
from ragdistill.e2e.runner import is_conversational, resolve_auto, run_pipeline

log = get_logger(__name__)

# the latency key of a slot in a run's result (the embedder slot's time is its retrieval)
LATENCY_KEY = {"embedder": "retrieve"}


def matrix_pipelines(pipeline: dict[str, str], variants: list[str]) -> list[tuple[str, str | None, str | None, dict[str, str]]]:
    """(name, swapped slot, its variant, pipeline) per run: all teacher, each active slot alone
    swapped to each variant, all student. A slot that is ``off`` stays off in every run."""
    active = [s for s, v in pipeline.items() if v != "off"]
    if not active:
        raise RagdistillError("swap=matrix: every pipeline slot is off; turn on the stages to compare (pipeline.<slot>=teacher)")
    if not variants:
        raise RagdistillError("swap=matrix: swap_variants is empty; e.g. swap_variants=[student,student_onnx]")
    teacher = {s: ("teacher" if s in active else "off") for s in pipeline}
    runs: list[tuple[str, str | None, str | None, dict[str, str]]] = [("all teacher", None, None, teacher)]
    runs += [(f"{slot} -> {v}", slot, v, {**teacher, slot: v}) for slot in active for v in variants if v != "teacher"]
    runs.append(("all student", None, "student", {s: ("student" if s in active else "off") for s in pipeline}))
    return runs


def _quality(result: dict[str, Any]) -> dict[str, float | None]:
    """The figures a swap is judged by: answer token F1 (where answers have references), the final
    ranking's NDCG@10 (after rerank when the reranker is on) and Recall@10."""
    ranking = result.get("after_rerank") or result["retrieval"]
    return {"token_f1": (result.get("generation") or {}).get("token_f1"), "ndcg@10": ranking.get("ndcg@10"),
            "recall@10": ranking.get("recall@10")}


def matrix_row(name: str, slot: str | None, variant: str | None, result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latency"]
    return {"run": name, "slot": slot, "variant": variant, "pipeline": result["pipeline"], **_quality(result),
            "per_query_ms": result["cost"]["per_query_s"] * 1000, "e2e_p50_ms": lat.get("end_to_end", {}).get("p50_ms"),
            "stage_p50_ms": {slot: v["p50_ms"] for slot in result["pipeline"] if (v := lat.get(LATENCY_KEY.get(slot, slot)))}}


def attribute(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run against the all-teacher run (the first row): quality lost (teacher minus run;
    positive = lost) per figure, the per-query time saved, the pipeline speed-up and, for a single
    swap, the swapped stage's own speed-up (its p50 under the teacher / under the swap)."""
    base = rows[0]
    out = []
    for r in rows:
        if r.get("error"):
            out.append(r)
            continue
        a = dict(r)
        for k in ("token_f1", "ndcg@10", "recall@10"):
            a[f"{k}_lost"] = base[k] - r[k] if base.get(k) is not None and r.get(k) is not None else None
        a["ms_saved_per_query"] = base["per_query_ms"] - r["per_query_ms"]
        a["speedup"] = base["per_query_ms"] / r["per_query_ms"] if r["per_query_ms"] else None
        t, v = base["stage_p50_ms"].get(r["slot"]), r["stage_p50_ms"].get(r["slot"])
        a["stage_speedup"] = t / v if r.get("slot") and t and v else None
        out.append(a)
    return out


def _slug(name: str) -> str:
    """A run's folder in the matrix directory (``reranker -> student_onnx`` -> ``reranker-student_onnx``)."""
    return name.replace(" -> ", "-").replace(" ", "-")


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def matrix_text(rows: list[dict[str, Any]]) -> str:
    """The matrix as a plain-text table, then whether the single swaps' losses add up to all-student's."""
    cols = ["run", "token_f1", "f1_lost", "ndcg@10", "ndcg_lost", "ms/query", "ms_saved", "speedup", "stage_speedup"]
    lines = ["  ".join(f"{c:>14}" if i else f"{c:<28}" for i, c in enumerate(cols))]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['run']:<28}  failed: {r['error']}")
            continue
        st = r.get("stage_speedup")
        vals = [_fmt(r["token_f1"]), _fmt(r["token_f1_lost"], "+.4f"), _fmt(r["ndcg@10"]), _fmt(r["ndcg@10_lost"], "+.4f"),
                _fmt(r["per_query_ms"], ".1f"), _fmt(r["ms_saved_per_query"], "+.1f"),
                "-" if r["speedup"] is None else f"{r['speedup']:.2f}x", "-" if st is None else f"{st:.2f}x"]
        lines.append(f"{r['run']:<28}  " + "  ".join(f"{v:>14}" for v in vals))
    singles = [r for r in rows if r.get("slot") and r.get("variant") == "student" and not r.get("error")]
    everything = next((r for r in rows if r["run"] == "all student" and not r.get("error")), None)
    if singles and everything:
        for k, label in (("token_f1", "F1"), ("ndcg@10", "NDCG@10")):
            if everything.get(f"{k}_lost") is not None and all(r.get(f"{k}_lost") is not None for r in singles):
                lines.append(f"{label} lost: single student swaps add up to {sum(r[f'{k}_lost'] for r in singles):+.4f}, "
                             f"all student loses {everything[f'{k}_lost']:+.4f} (a gap = the stages' losses interact)")
    return "\n".join(lines)


def matrix_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Two bar panels sharing one row per swap: the quality it loses (answer F1 where the runs have
    answers, else NDCG@10) and the pipeline speed-up it buys. Run names are the y labels (short,
    one per row, so none overlap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swaps = [r for r in rows[1:] if not r.get("error")]
    if not swaps:
        return
    key = "token_f1" if all(r.get("token_f1_lost") is not None for r in swaps) else "ndcg@10"
    names = [r["run"] for r in swaps][::-1]
    lost = [r[f"{key}_lost"] or 0.0 for r in swaps][::-1]
    speed = [r["speedup"] or 0.0 for r in swaps][::-1]
    fig, (a1, a2) = plt.subplots(1, 2, sharey=True, figsize=(9, 1.4 + 0.42 * len(swaps)))
    a1.barh(names, lost, color=["#c44e52" if v > 0 else "#55a868" for v in lost])
    a1.axvline(0, color="k", lw=0.8)
    a1.set_xlabel(f"{'answer token F1' if key == 'token_f1' else 'NDCG@10'} lost vs all teacher")
    a2.barh(names, speed, color="#4c72b0")
    a2.axvline(1, color="k", lw=0.8)
    a2.set_xlabel("pipeline speed-up vs all teacher (x, per-query time)")
    for ax in (a1, a2):
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("swap matrix: each stage alone swapped, then all student", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def run_matrix(cfg: DictConfig, custom: dict[str, Any] | None = None) -> Path:
    """Run every pipeline of the matrix (:func:`matrix_pipelines`); returns the matrix directory."""
    work = Path(cfg.paths.work_dir).resolve()
    cfg = resolve_auto(cfg, is_conversational(cfg))
    base_pipe = {k: str(v) for k, v in cfg.pipeline.items()}
    out = Path(cfg.out_dir or work / "e2e" / "matrix" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    runs = matrix_pipelines(base_pipe, [str(v) for v in cfg.swap_variants])
    loaded: dict[tuple[str, str], tuple[Any, dict]] = {}
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] | None = None  # the all-teacher run's result
    for name, slot, variant, pipe in runs:
        run_cfg = OmegaConf.merge(cfg, {"pipeline": pipe, "out_dir": str(out / _slug(name)), "swap": "off"})
        print(f"\n=== swap matrix: {name} ({' '.join(f'{k}={v}' for k, v in pipe.items())})", flush=True)
        try:
            result = run_pipeline(run_cfg, custom, loaded)
        except RagdistillError as e:
            if slot is None and variant is None:  # the all-teacher run is the reference: without it there is no matrix
                raise
            log.warning("swap matrix: %s failed: %s", name, e)
            rows.append({"run": name, "slot": slot, "variant": variant, "pipeline": pipe, "error": str(e)})
            continue
        write_report(Path(run_cfg.out_dir), OmegaConf.to_container(run_cfg, resolve=True, enum_to_str=True), result, work)
        rows.append(matrix_row(name, slot, variant, result))
        if meta is None:
            meta = result
    rows = attribute(rows)
    text = matrix_text(rows)
    head = (f"swap matrix on {meta['dataset']}: {meta['n_queries']} held-out queries, "
            f"{(meta.get('generation') or {}).get('n_answers', 0)} answered (max_generate={cfg.max_generate})")
    print(f"\n[e2e] {head}\n{text}\n[e2e] matrix: {out / 'matrix.html'}", flush=True)
    write_json(out / "matrix.json", {"rows": rows, "dataset": meta["dataset"],
                                     "n_queries": meta["n_queries"], "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)})
    write_text_atomic(out / "matrix.txt", head + "\n" + text + "\n")
    matrix_plot(rows, out / "swap_matrix.png")
    table = [["run", "answer F1", "F1 lost", "NDCG@10", "NDCG@10 lost", "ms / query", "ms saved", "speed-up", "stage speed-up", "report"]] + [
        [r["run"], r.get("token_f1"), r.get("token_f1_lost"), r.get("ndcg@10"), r.get("ndcg@10_lost"), r.get("per_query_ms"),
         r.get("ms_saved_per_query"), None if not r.get("speedup") else f"{r['speedup']:.2f}x",
         None if not r.get("stage_speedup") else f"{r['stage_speedup']:.2f}x",
         r.get("error") or _slug(r["run"]) + "/report.html"] for r in rows]
    write_text_atomic(out / "matrix.html", "\n".join([
        f"<html><head><meta charset='utf-8'><title>ragdistill swap matrix</title><style>{CSS}</style></head><body>",
        f"<h1>Swap matrix</h1><p>{html.escape(head)}. Each row: one stage alone swapped (the others keep their teacher); "
        "lost = all-teacher minus the run (positive: quality lost); speed-up = all-teacher per-query time / the run's.</p>",
        _table(table), "<img src='swap_matrix.png' alt='swap matrix'>", "</body></html>"]))
    return out

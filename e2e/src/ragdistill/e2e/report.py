"""One directory per run: ``report.json`` (every figure, the config, versions, git commit) and
``report.html`` with a table per stage and PNG plots, readable offline; plus the multi-run comparison."""

from __future__ import annotations

import html
import json
import textwrap
from pathlib import Path
from typing import Any

from ragdistill.common.io import write_json, write_text_atomic
from ragdistill.common.report import SYSTEM_ORDER, relative
from ragdistill.common.results import git_commit, mismatches, versions

__all__ = ["compare_runs", "git_commit", "pipeline_label", "stage_evaluations", "summary_row", "versions", "write_report"]


def stage_evaluations(work_dir: Path, run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The latest ``ragdistill <stage> evaluate`` results (teacher vs students vs export) per installed
    stage; with ``run_config`` each carries ``mismatch``: how the data and library versions it was
    measured with differ from this run's (so a table from other data is flagged, never passed off)."""
    from ragdistill.common.stage import load_stages

    out = {}
    here = {"config": run_config or {}, "versions": versions()}
    for s in load_stages():
        f = work_dir / s / "evaluate" / "results.json"
        if f.exists():
            ev = json.loads(f.read_text())
            if run_config is not None:
                ev["mismatch"] = mismatches(here, ev.get("provenance") or {})
            out[s] = ev
    return out


def pipeline_label(p: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items())


def short_label(p: dict[str, str]) -> str:
    """A pipeline in a few characters for plots: ``all teacher``, ``all student``, or the slots that
    differ from the most common variant (``reranker=student_onnx``)."""
    on = {k: v for k, v in p.items() if v != "off"}
    kinds = set(on.values())
    if len(kinds) == 1:
        return f"all {next(iter(kinds))}"
    common = max(kinds, key=lambda v: list(on.values()).count(v))
    return f"all {common}, " + ", ".join(f"{k}={v}" for k, v in on.items() if v != common)


def _table(rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return html.escape("-" if v is None else str(v))

    head, *body = rows
    return ("<table><tr>" + "".join(f"<th>{cell(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")


def _stage_rows(results: dict[str, dict[str, float]]) -> list[list[Any]]:
    """A stage table: metric rows, system columns; beside each value its relation to the teacher's
    (quality as % of the teacher, speed as a speed-up, size as a reduction)."""
    systems = [s for s in SYSTEM_ORDER if s in results] + sorted(s for s in results if s not in SYSTEM_ORDER)
    metrics = list(dict.fromkeys(m for s in systems for m in results[s]))
    rows: list[list[Any]] = [["metric", *systems]]
    for m in metrics:
        row: list[Any] = [m]
        for s in systems:
            v, t = results[s].get(m), results.get("teacher", {}).get(m)
            rel = relative(m, t, v) if s != "teacher" else None
            row.append(f"{v:.4g} ({rel})" if rel else v)
        rows.append(row)
    return rows


def _plots(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    lat = {k: v["p50_ms"] for k, v in report["result"]["latency"].items() if k != "end_to_end"}
    if lat:
        fig, ax = plt.subplots(figsize=(6, 1.2 + 0.45 * len(lat)))
        ax.barh(list(lat), list(lat.values()), color="#4c72b0")
        ax.set_xlabel("p50 latency per query (ms)")
        ax.set_title("\n".join(textwrap.wrap("per-stage latency: " + pipeline_label(report["result"]["pipeline"]), 70)), fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "latency_breakdown.png", dpi=100)
        plt.close(fig)
        files.append("latency_breakdown.png")
    for stage, ev in report.get("stage_evaluations", {}).items():
        res = ev.get("results", {})
        pts = []
        for system, m in res.items():
            q = next((m[k] for k in ("ndcg@10", "token_f1", "recall_lift@10", "recall@10") if k in m), None)
            speed = next((m[k] for k in m if k.endswith("p50_ms")), None)
            if q is not None and speed is not None:
                pts.append((system, speed, q))
        if len(pts) >= 2:
            _scatter(pts, out / f"quality_vs_latency_{stage}.png", "p50 latency (ms, log)", "quality",
                     f"{stage}: quality vs latency", figsize=(5, 3.5), fontsize=7, logx=True)
            files.append(f"quality_vs_latency_{stage}.png")
    return files


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
       "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#eee}.warn{color:#a40;font-weight:bold}")


def write_report(out: Path, cfg: dict[str, Any], result: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    report = {"config": cfg, "versions": versions(), "git_commit": git_commit(), "result": result,
              "stage_evaluations": stage_evaluations(work_dir, cfg)}
    write_json(out / "report.json", report)
    pngs = _plots(report, out)
    r = result
    parts = [f"<html><head><meta charset='utf-8'><title>ragdistill e2e</title><style>{CSS}</style></head><body>",
             f"<h1>ragdistill e2e report</h1><p>{html.escape(pipeline_label(r['pipeline']))} &mdash; {r['dataset']}, "
             f"{r['n_queries']} held-out queries ({r.get('conversational', 0)} with a conversation history), {r['n_docs']} docs; "
             f"commit {html.escape(str(report['git_commit']))}</p>"]
    keys = list(r["retrieval"])
    rows = [["", *keys]]
    if r.get("retrieval_raw_question"):  # the rewriter's worth in the pipeline: the same retriever on the raw question
        rows.append(["raw question (no rewrite)", *(r["retrieval_raw_question"].get(k) for k in keys)])
    rows.append(["after retrieve" + (" (rewritten query)" if r.get("retrieval_raw_question") else ""), *r["retrieval"].values()])
    if r.get("after_rerank"):
        rows.append(["after rerank", *r["after_rerank"].values()])
    parts += ["<h2>Retrieval</h2>", _table(rows)]
    if r.get("rewrites"):
        rw = list(r["rewrites"].values())
        changed = [x for x in rw if x["query"].strip() != x["question"].strip()]
        parts += [f"<h2>Rewrites ({len(changed)} of {len(rw)} questions rewritten)</h2>",
                  _table([["turns before", "question", "query the pipeline searched with"]] +
                         [[x["history_turns"], x["question"], x["query"]] for x in (changed or rw)[:8]])]
    if r.get("generation"):
        g = r["generation"]
        parts += ["<h2>Generation</h2>", _table([list(g), list(g.values())])]
    if r.get("mteb"):
        m = r["mteb"]
        parts += [f"<h2>MTEB (embedder, local task {html.escape(m['task'])})</h2>",
                  _table([["ndcg@10", "mrr@10", "recall@100"], [m["mteb_ndcg@10"], m["mteb_mrr@10"], m["mteb_recall@100"]]])]
    if r.get("ragas"):
        rg = r["ragas"]
        parts += [f"<h2>RAGAS (judge {html.escape(rg['judge'])}, {rg['questions']} questions; a failed judgement is counted, not scored)</h2>",
                  _table([["metric", "mean", "scored", "failed"]] + [[k, v["mean"], v["scored"], v["failed"]] for k, v in rg["metrics"].items()])]
    lat_rows = [["stage", "p50 ms", "p95 ms", "items/s", "n"]] + [
        [k, v["p50_ms"], v["p95_ms"], v["items_per_s"], v["n_items"]] for k, v in r["latency"].items()]
    parts += ["<h2>Latency and cost</h2>", _table(lat_rows),
              _table([["s / query", "queries/s", "USD / 1K queries", "hourly price"],
                      [r["cost"]["per_query_s"], r["cost"]["queries_per_s"], r["cost"]["usd_per_1k_queries"], r["cost"]["hourly_price_usd"]]]),
              _table([["stage", "variant", "size MB", "memory MB", "load s"]] + [
                  [k, f.get("variant"), f.get("size_mb"), f.get("memory_mb"), f.get("load_s")] for k, f in r["stages"].items()])]
    routed = {k: f["routing"] for k, f in r["stages"].items() if f.get("routing")}
    if routed:  # pipeline.<slot>=routed: how much went to the teacher, and the time on each path
        parts += ["<h2>Routing (student first, teacher below the calibrated confidence threshold)</h2>",
                  _table([["stage", "signal", "threshold", "calls", "teacher calls", "teacher fraction", "student s", "teacher s"]] + [
                      [k, s["signal"], s["threshold"], s["n_calls"], s["n_teacher_calls"], s["teacher_fraction"], s["student_s"], s["teacher_s"]]
                      for k, s in routed.items()])]
    for stage, ev in report["stage_evaluations"].items():
        if ev.get("results"):
            data = ((ev.get("provenance") or {}).get("config") or {}).get("data") or {}
            parts += [f"<h2>Stage: {stage} (teacher vs student vs export; % of the teacher's quality, speed-up, size)</h2>",
                      f"<p>ragdistill {stage} evaluate on {html.escape(str(data.get('path') or data.get('name', '?')))} "
                      f"split {html.escape(str(ev.get('split', '?')))}, {ev.get('n_items')} items, {html.escape(str(ev.get('finished', '')))}</p>"]
            if ev.get("mismatch"):
                parts.append("<p class='warn'>Not comparable with this run's figures (measured with other data or library versions): "
                             + html.escape("; ".join(ev["mismatch"])) + "</p>")
            parts.append(_table(_stage_rows(ev["results"])))
    parts += ["<h2>Plots</h2>"] + [f"<img src='{p}' alt='{p}'>" for p in pngs] + ["</body></html>"]
    write_text_atomic(out / "report.html", "\n".join(parts))
    return report


def summary_row(report: dict[str, Any]) -> dict[str, Any]:
    r = report["result"]
    routed = "".join(f" [{k}: {f['routing']['teacher_fraction']:.0%} to teacher]" for k, f in r["stages"].items() if f.get("routing"))
    if r.get("rerank_fusion") is not None:
        routed += f" [reranker fused with the first stage, w={r['rerank_fusion']}]"
    row = {"pipeline": pipeline_label(r["pipeline"]) + routed, "ndcg@10": r["retrieval"]["ndcg@10"],
           "ndcg@10_reranked": (r.get("after_rerank") or {}).get("ndcg@10"),
           "recall@100": r["retrieval"]["recall@100"]}
    g = r.get("generation") or {}
    row.update({"token_f1": g.get("token_f1"), "grounding": g.get("grounding"),
                "e2e_p50_ms": r["latency"].get("end_to_end", {}).get("p50_ms"),
                "usd_per_1k": r["cost"]["usd_per_1k_queries"], "size_mb": r.get("total_size_mb")})
    return row


def compare_runs(run_dirs: list[Path], out: Path | None = None) -> str:
    """Join several runs' reports into one table; retention % and speed-up x vs the all-teacher run
    (or the first run when there is none)."""
    from ragdistill.common.errors import RagdistillError

    reports = []
    for d in run_dirs:
        f = Path(d) / "report.json"
        if not f.exists():
            raise RagdistillError(f"{f}: no report here; run `ragdistill e2e` first (each run writes one directory)")
        reports.append(json.loads(f.read_text()))
    rows = [summary_row(r) for r in reports]
    base = next((r for r, rep in zip(rows, reports, strict=True) if set(rep["result"]["pipeline"].values()) <= {"teacher", "off"}), rows[0])
    cols = list(rows[0])
    lines = ["  ".join(cols) + "  quality_retention  speedup"]
    for r in rows:
        q = r["token_f1"] if r["token_f1"] is not None and base["token_f1"] else r["ndcg@10_reranked"] or r["ndcg@10"]
        bq = base["token_f1"] if r["token_f1"] is not None and base["token_f1"] else base["ndcg@10_reranked"] or base["ndcg@10"]
        ret = f"{q / bq:.1%}" if bq else "-"
        sp = f"{base['e2e_p50_ms'] / r['e2e_p50_ms']:.2f}x" if r["e2e_p50_ms"] and base["e2e_p50_ms"] else "-"
        lines.append("  ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()) + f"  {ret}  {sp}")
    base_rep = reports[rows.index(base)]
    flagged = {rep["result"]["pipeline"] and pipeline_label(rep["result"]["pipeline"]): m for rep in reports
               if (m := mismatches(base_rep, rep, ("data.name", "data.path", "data.test_split", "data.max_queries", "data.max_docs")))}
    lines += [f"NOT COMPARABLE with the baseline: {k}: {'; '.join(m)}" for k, m in flagged.items()]
    text = "\n".join(lines)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "comparison.json", {"runs": [str(d) for d in run_dirs], "rows": rows, "baseline": base["pipeline"],
                                             "mismatch": flagged})
        write_text_atomic(out / "comparison.txt", text + "\n")
        _compare_plot([{**r, "label": short_label(rep["result"]["pipeline"])} for r, rep in zip(rows, reports, strict=True)], out)
    return text


def _compare_plot(rows: list[dict[str, Any]], out: Path) -> None:
    pts = [(r.get("label") or r["pipeline"], r["e2e_p50_ms"], r["token_f1"] if r["token_f1"] is not None else r["ndcg@10"])
           for r in rows if r["e2e_p50_ms"]]
    if pts:
        _scatter(pts, out / "quality_vs_latency.png", "end-to-end p50 latency (ms)", "answer token F1 (or NDCG@10)",
                 "quality vs latency per configuration", figsize=(7, 4), fontsize=8)


def _scatter(pts: list[tuple[str, float, float]], path: Path, xlabel: str, ylabel: str, title: str,
             figsize: tuple[float, float], fontsize: int, logx: bool = False) -> None:
    """One quality-vs-latency scatter plot as a PNG (stage systems, or pipeline runs). Each point is
    numbered on the plot and named in a legend below it, so long names never overlap each other or
    the points, however close the points lie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["\n    ".join(textwrap.wrap(f"{i}  {name}", 60)) for i, (name, _, _) in enumerate(pts, 1)]
    legend_lines = sum(n.count("\n") + 1 for n in names)
    fig, ax = plt.subplots(figsize=(figsize[0], figsize[1] + 0.22 * legend_lines))
    for i, ((_, x, y), name) in enumerate(zip(pts, names, strict=True), 1):
        ax.scatter(x, y, s=40, label=name, zorder=3)
        ax.annotate(str(i), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=fontsize, weight="bold")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.18), fontsize=fontsize, frameon=False, handletextpad=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)

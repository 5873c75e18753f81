"""``ragdistill cost``: what teacher, student and routed pipelines cost, and when distilling pays.

Reads what runs measured, never typed-in speeds:

- the latest e2e report of each pipeline (``<work_dir>/e2e/runs/*/report.json``): per-slot mean
  seconds per call -> USD per 1K queries at the hourly price of the machine that measured them;
  with ``teacher_pricing=api`` the slots whose stage has an LLM teacher (``Stage.teacher_capability
  == "generate"``) are priced per token instead (tokens estimated from the report's questions,
  contexts and answers);
- the stages' evaluations (``<work_dir>/<stage>/evaluate/results.json``): every ``*_per_s``
  throughput -> USD per 1K items per system;
- the one-off distillation (``<work_dir>/<stage>/teach/teach.json`` and ``train/train.json``, the
  result contract of :mod:`ragdistill.common.results`): labelling (tokens at the API price, or
  seconds) + training hours.

Which stage fills which pipeline slot, and whose teacher is an LLM, comes from the installed stages
(:func:`~ragdistill.common.stage.load_stages`: ``Stage.slot``, ``Stage.teacher_capability``).

Break-even: a pipeline saving ``s`` USD per query against the all-teacher pipeline pays back a
distillation round costing ``D`` at ``D / (s * retrain_every_months)`` queries a month.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_json
from ragdistill.common.results import RESULTS, VerbResult
from ragdistill.common.stage import Stage, load_stages

STUDENT_VARIANTS = ("student", "student_onnx", "student_base")
DISTILLED_VARIANTS = ("student", "student_onnx", "routed")  # a slot running these paid for a distillation round
LLM_CAPABILITY = "generate"  # a stage whose teacher generates text: priced per token with teacher_pricing=api
# the harness times each slot's step under the slot's name, except the first stage's: encode + search = "retrieve"
STEP_SLOTS = {"retrieve": "embedder"}
# per slot, the report's answer fields an LLM call of that slot reads and writes (api token estimate)
TOKEN_FIELDS = {"generator": (("question", "contexts"), "answer"), "rewriter": (("question",), "query")}


def slot_stages(stages: dict[str, Stage] | None = None) -> dict[str, Stage]:
    """Pipeline slot -> the installed stage that fills it (``Stage.slot``); two stages claiming one
    slot is an error naming both."""
    out: dict[str, Stage] = {}
    for s in (load_stages() if stages is None else stages).values():
        if not s.slot:
            continue
        if s.slot in out:
            raise RagdistillError(f"stages {out[s.slot].name} and {s.name} both fill the pipeline slot {s.slot!r} "
                                  "(Stage.slot); uninstall one or give it another slot")
        out[s.slot] = s
    return out


@dataclass
class CostConfig:
    """Prices (``conf/cost/default.yaml``); every ``key=value`` on the command line overrides one."""

    hourly_usd: float = 0.20  # the machine the figures were measured on (students, self-hosted teachers)
    teacher_pricing: str = "measured"  # measured (time x hourly_usd) | api (teacher LLM stages priced per token)
    api_usd_per_1m_input_tokens: float = 0.15
    api_usd_per_1m_output_tokens: float = 0.60
    chars_per_token: float = 4.0  # token estimate from text lengths
    label_hourly_usd: float = 0.20  # machine that ran teach (when the teacher is not an API)
    train_hourly_usd: float = 0.20  # machine that ran train
    retrain_every_months: float = 1.0  # one distillation round is paid again this often
    monthly_queries: float = 1_000_000  # volume for the monthly-cost column


def load_prices(path: str | Path | None, overrides: list[str]) -> CostConfig:
    """Prices from a YAML file (checked against CostConfig: a typo names the key) plus overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    base = OmegaConf.structured(CostConfig)
    try:
        if path is not None:
            if not Path(path).exists():
                raise RagdistillError(f"{path}: prices file not found")
            base = OmegaConf.merge(base, OmegaConf.load(path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise RagdistillError(f"cost: overrides are key=value, got {bad}; keys: {', '.join(CostConfig.__dataclass_fields__)}")
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as e:
        raise RagdistillError(f"cost prices{f' ({path})' if path else ''}: {e}") from e
    prices = CostConfig(**OmegaConf.to_container(cfg))
    if prices.teacher_pricing not in ("measured", "api"):
        raise RagdistillError(f"teacher_pricing={prices.teacher_pricing!r}: choose measured or api")
    return prices


def pipeline_kind(pipeline: dict[str, str]) -> str:
    active = {v for v in pipeline.values() if v != "off"}
    if "routed" in active:
        return "routed"
    if active <= {"teacher"}:
        return "teacher"
    if active <= set(STUDENT_VARIANTS):
        return "student"
    return "mixed"


def resolved_pipeline(report: dict[str, Any]) -> dict[str, str]:
    """Each slot's variant; a user's own component (``custom``) takes the role its run configured
    (``pipeline.<slot>=teacher|student|routed`` in the report's config)."""
    configured = (report.get("config") or {}).get("pipeline") or {}
    return {slot: (configured.get(slot, v) if v == "custom" else v) for slot, v in report["result"]["pipeline"].items()}


def latest_reports(work_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The newest report of each distinct pipeline under ``<work_dir>/e2e/runs``."""
    runs = sorted((work_dir / "e2e" / "runs").glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    by_pipeline: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f in runs:
        try:
            rep = json.loads(f.read_text())
            key = json.dumps(resolved_pipeline(rep), sort_keys=True)
        except (json.JSONDecodeError, KeyError) as e:
            raise RagdistillError(f"{f}: not an e2e report ({e}); delete it or rerun `ragdistill e2e`") from e
        by_pipeline[key] = (f, rep)
    return list(by_pipeline.values())


def _tokens(text: str, prices: CostConfig) -> float:
    return len(text) / prices.chars_per_token


def _api_tokens_per_call(result: dict[str, Any], slot: str, prices: CostConfig) -> tuple[float, float]:
    """Mean input and output tokens of one LLM call of ``slot``, from the texts the report holds."""
    if slot not in TOKEN_FIELDS:
        raise RagdistillError(f"teacher_pricing=api: the e2e report holds no texts to estimate the {slot} slot's LLM tokens from "
                              f"(it records those of {', '.join(TOKEN_FIELDS)}); use teacher_pricing=measured")
    answers = list((result.get("answers") or {}).values())
    if not answers:
        raise RagdistillError(f"teacher_pricing=api: the report has no answers to estimate {slot} tokens from; "
                              "run e2e with a generator or use teacher_pricing=measured")
    ins, out = TOKEN_FIELDS[slot]

    def text(a: dict[str, Any], f: str) -> str:
        v = a.get(f) or ""
        return "\n".join(v) if isinstance(v, list) else str(v)

    tin = [_tokens("".join(text(a, f) for f in ins), prices) for a in answers]
    tout = [_tokens(text(a, out), prices) for a in answers]
    return sum(tin) / len(tin), sum(tout) / len(tout)


def pipeline_cost(result: dict[str, Any], prices: CostConfig, slots: dict[str, Stage] | None = None) -> dict[str, Any]:
    """USD per query per slot and in total, from one e2e report's ``result``; ``slots`` (default
    :func:`slot_stages`) says which slots an LLM teacher fills."""
    slots = slot_stages() if slots is None else slots
    per_stage: dict[str, float] = {}
    seconds = 0.0
    for key, lat in result["latency"].items():
        slot = STEP_SLOTS.get(key, key)
        if slot not in result["pipeline"]:
            continue  # end_to_end: the sum of the steps, not a step
        variant = result["pipeline"].get(slot, "student")
        mean_s = lat["mean_ms"] / 1000
        seconds += mean_s
        usd = mean_s * prices.hourly_usd / 3600
        if prices.teacher_pricing == "api" and variant in ("teacher", "routed"):
            if slot not in slots:
                raise RagdistillError(f"teacher_pricing=api: no installed stage fills the pipeline slot {slot!r} (Stage.slot), "
                                      f"so whether its teacher is an LLM priced per token is unknown; install that stage or "
                                      "use teacher_pricing=measured")
            if slots[slot].teacher_capability == LLM_CAPABILITY:
                usd = _llm_slot_usd(result, slot, variant, prices)
        per_stage[slot] = usd
    total = sum(per_stage.values())
    return {"usd_per_query_by_stage": per_stage, "usd_per_query": total, "usd_per_1k_queries": total * 1000,
            "seconds_per_query": seconds, "queries_per_s": 1 / seconds if seconds else float("inf"),
            "usd_per_month": total * prices.monthly_queries}


def _llm_slot_usd(result: dict[str, Any], slot: str, variant: str, prices: CostConfig) -> float:
    """A teacher (or routed) LLM slot at the API's token prices; routed: the student's measured time
    plus the teacher's share of the calls at the API price."""
    tin, tout = _api_tokens_per_call(result, slot, prices)
    api = (tin * prices.api_usd_per_1m_input_tokens + tout * prices.api_usd_per_1m_output_tokens) / 1e6
    if variant == "teacher":
        return api
    routing = (result.get("stages", {}).get(slot) or {}).get("routing")
    if not routing:
        raise RagdistillError(f"teacher_pricing=api: the routed {slot}'s report has no routing stats "
                              f"(result.stages.{slot}.routing from RoutedComponent.stats())")
    n = max(routing["n_calls"], 1)
    return routing["student_s"] / n * prices.hourly_usd / 3600 + routing["teacher_fraction"] * api


def read_result(work_dir: Path, stage: str, verb: str) -> tuple[VerbResult | None, Path]:
    """The result ``verb`` of ``stage`` wrote under ``work_dir`` (None when it has not run) and its file."""
    cls = RESULTS[verb]
    f = work_dir / stage / verb / cls.FILE
    if not f.is_file():
        return None, f
    return cls.from_dict(read_json(f), str(f)), f


def distillation_cost(work_dir: Path, stages: list[str], prices: CostConfig) -> dict[str, Any]:
    """One round of teach + train for ``stages``, from their ``teach.json`` / ``train.json``; ``missing``
    lists the results not found (then the round's cost is incomplete: no break-even)."""
    out: dict[str, Any] = {"by_stage": {}, "missing": [], "usd": 0.0}
    for stage in stages:
        row: dict[str, Any] = {}
        for verb in ("teach", "train"):
            res, f = read_result(work_dir, stage, verb)
            if res is None:
                out["missing"].append(str(f))
                continue
            if verb == "teach" and prices.teacher_pricing == "api" and (res.input_tokens or res.output_tokens):
                usd = (res.input_tokens * prices.api_usd_per_1m_input_tokens + res.output_tokens * prices.api_usd_per_1m_output_tokens) / 1e6
            else:
                usd = res.seconds * (prices.label_hourly_usd if verb == "teach" else prices.train_hourly_usd) / 3600
            row[verb] = {"seconds": res.seconds, "n_items": res.n_items, "teacher_calls": res.teacher_calls, "cached": res.cached,
                         "train_steps": res.train_steps, "input_tokens": res.input_tokens, "output_tokens": res.output_tokens,
                         "usd": usd}
            out["usd"] += usd
        out["by_stage"][stage] = row
    out["complete"] = not out["missing"]
    return out


def stage_throughput_costs(work_dir: Path, prices: CostConfig) -> dict[str, dict[str, dict[str, float]]]:
    """USD per 1K items for every ``*_per_s`` figure in each installed stage's evaluate/results.json."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for stage in load_stages():
        f = work_dir / stage / "evaluate" / "results.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text()).get("results", {})
        for system, metrics in res.items():
            for k, v in metrics.items():
                if k.endswith("per_s") and isinstance(v, (int, float)) and v > 0:
                    out.setdefault(stage, {}).setdefault(system, {})[k.removesuffix("_per_s") + "_usd_per_1k"] = 1000 / v * prices.hourly_usd / 3600
    return out


def compute_costs(work_dir: str | Path, prices: CostConfig) -> dict[str, Any]:
    work_dir = Path(work_dir).resolve()
    reports = latest_reports(work_dir)
    if not reports:
        raise RagdistillError(f"{work_dir / 'e2e' / 'runs'}: no e2e report; run `ragdistill e2e` (e.g. once with every stage "
                              "teacher, once student) first")
    slots = slot_stages()
    rows = []
    for path, rep in reports:
        r = {**rep["result"], "pipeline": resolved_pipeline(rep)}
        row = {"pipeline": r["pipeline"], "kind": pipeline_kind(r["pipeline"]), "report": str(path), **pipeline_cost(r, prices, slots)}
        g = r.get("generation") or {}
        row["quality"] = g.get("token_f1") if g.get("token_f1") is not None else (r.get("after_rerank") or r["retrieval"])["ndcg@10"]
        routing = {s: f["routing"] for s, f in (r.get("stages") or {}).items() if isinstance(f, dict) and f.get("routing")}
        if routing:
            row["routing"] = routing
        rows.append(row)
    teachers = [x for x in rows if x["kind"] == "teacher"]
    for row in rows:
        row["break_even_queries_per_month"] = None
        row["savings_usd_per_query"] = None
        if row["kind"] == "teacher" or not teachers:
            continue
        # compare with the all-teacher run of the same stages (else the first all-teacher run)
        active = {k for k, v in row["pipeline"].items() if v != "off"}
        teacher = next((t for t in teachers if {k for k, v in t["pipeline"].items() if v != "off"} == active), teachers[0])
        row["compared_with"] = teacher["pipeline"]
        distilled = sorted(s for s, v in row["pipeline"].items() if v in DISTILLED_VARIANTS)
        d = distillation_cost(work_dir, sorted(slots[s].name for s in distilled if s in slots), prices)
        # a distilled slot no installed stage fills has no teach/train results to price: the round is incomplete
        d["missing"] += [f"pipeline.{s}: no installed stage fills this slot (Stage.slot)" for s in distilled if s not in slots]
        d["complete"] = not d["missing"]
        row["distillation"] = d
        save = teacher["usd_per_query"] - row["usd_per_query"]
        row["savings_usd_per_query"] = save
        if d["complete"] and d["usd"] > 0 and save > 0:
            row["break_even_queries_per_month"] = d["usd"] / (save * prices.retrain_every_months)
    return {"work_dir": str(work_dir), "prices": asdict(prices), "pipelines": rows,
            "stages": stage_throughput_costs(work_dir, prices)}


def format_table(costs: dict[str, Any]) -> str:
    head = ["kind", "pipeline", "quality", "queries/s", "USD/1K queries", "USD/month", "distill USD", "break-even queries/month"]
    rows = [head]
    for r in costs["pipelines"]:
        d = r.get("distillation") or {}
        be = r["break_even_queries_per_month"]
        rows.append([r["kind"], " ".join(f"{k}={v}" for k, v in r["pipeline"].items() if v != "off"), f"{r['quality']:.4f}",
                     f"{r['queries_per_s']:.2f}", f"{r['usd_per_1k_queries']:.6f}", f"{r['usd_per_month']:.2f}",
                     f"{d['usd']:.4f}" + ("" if d.get("complete", True) else " (partial)") if d else "-",
                     f"{be:,.0f}" if be is not None else ("never (no savings)" if (r["savings_usd_per_query"] or 0) < 0 else "-")])
    widths = [max(len(x[i]) for x in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) for x in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for stage, systems in costs["stages"].items():
        lines.append(f"\n[{stage}] evaluate throughput -> USD per 1K items")
        for system, m in systems.items():
            lines.append(f"  {system:<18} " + "  ".join(f"{k} {v:.6f}" for k, v in m.items()))
    missing = sorted({m for r in costs["pipelines"] for m in (r.get("distillation") or {}).get("missing", [])})
    if missing:
        lines.append("\nnot recorded (no break-even without them; `ragdistill <stage> teach` / `train` write them):\n  "
                     + "\n  ".join(missing))
    return "\n".join(lines)


def cost_command(argv: list[str]) -> None:
    import os

    from ragdistill.common.paths import conf_dir

    p = argparse.ArgumentParser(prog="ragdistill cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("RAGDISTILL_WORK", "work")))
    p.add_argument("--prices", type=Path, default=None, help="prices YAML (default conf/cost/default.yaml)")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default <work_dir>/cost/cost.json)")
    p.add_argument("overrides", nargs="*", help=f"price overrides key=value; keys: {', '.join(CostConfig.__dataclass_fields__)}")
    a = p.parse_intermixed_args(argv)
    try:
        prices_file = a.prices or (conf_dir() / "cost" / "default.yaml")
        prices = load_prices(prices_file if Path(prices_file).exists() or a.prices else None, a.overrides)
        costs = compute_costs(a.work_dir, prices)
    except RagdistillError as e:
        print(f"ragdistill: error: {e}", file=sys.stderr)
        sys.exit(2)
    out = a.out or Path(a.work_dir).resolve() / "cost" / "cost.json"
    write_json(out, costs)
    print(format_table(costs) + f"\n\n[cost] written to {out}", flush=True)


cost_command.description = "USD per 1K queries of teacher, student and routed pipelines from measured throughput; distillation break-even"

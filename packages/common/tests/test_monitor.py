"""ragdistill monitor, the machinery written once for every stage: logs that name the bad line, the
drift check, the baseline every export writes, and the command's exit codes (0 ok, 1 drift, 2 error).

It runs on the toy stage of test_stage_hooks.py (a lexical reranker distilled from BM25: real
teacher, real student), imported from there. Each stage's own divergence math (its ``disagreement``
and ``divergence_metrics`` hooks) is tested with the stage.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_json, write_jsonl
from ragdistill.common.ops.monitor import (
    BASELINE_FILE,
    check,
    default_baseline_path,
    measure,
    monitor_command,
    read_log,
    write_monitor_baseline,
)
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.stage import register


def _toy_module():
    """test_stage_hooks.py, imported once under its own name (the tests run with --import-mode=importlib)."""
    name = "ragdistill_tests_toy_stage"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_stage_hooks.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="module")
def toy():
    return register(_toy_module().ToyStage())


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """A work dir where the toy stage has been taught, trained and exported (the export writes the baseline)."""
    work = tmp_path_factory.mktemp("monitor")
    cfg = compose("toy_schema", [f"paths.work_dir={work}", "run.report_to=[]"])
    verbs = stage_verbs(toy)
    for verb in ("teach", "train", "export"):
        verbs[verb](cfg)
    return work, cfg


def _lines(records):
    return [{"query": r["query"], "docs": r["docs"]} for r in records]


def test_log_errors_name_the_line(toy, tmp_path, capsys):
    bad = tmp_path / "live.jsonl"
    bad.write_text('{"query": "a", "docs": ["x"]}\n\n{"query": "b"\n')
    with pytest.raises(RagdistillError, match=r"live\.jsonl:3: malformed JSON line"):
        read_log(bad, toy)
    write_jsonl(bad, [{"query": "a", "docs": ["x"]}, {"query": "b"}])
    with pytest.raises(RagdistillError, match=r"live\.jsonl:2: a toy log line needs 'query', 'docs'; missing docs"):
        read_log(bad, toy)
    bad.write_text('{"query": "q", "docs": ["a"]}\n["not", "an", "object"]\n')
    with pytest.raises(RagdistillError, match=r"live\.jsonl:2: expected a JSON object with query, docs"):
        read_log(bad, toy)
    bad.write_text("\n\n")
    with pytest.raises(RagdistillError, match=r"live\.jsonl: the log has no inputs"):
        read_log(bad, toy)
    rows = [{"query": f"q{i}", "docs": ["d"]} for i in range(50)]
    write_jsonl(bad, rows)
    sampled = read_log(bad, toy, sample=10, seed=3)
    assert len(sampled) == 10 and len({r["query"] for r in sampled}) == 10 and sampled == read_log(bad, toy, sample=10, seed=3)
    assert read_log(bad, toy, sample=100) == rows  # fewer lines than the sample: all of them, in order
    # the command reports a bad log before loading any model or config: exit status 2, one line
    bad.write_text('{"query": "a"}\n')
    with pytest.raises(SystemExit) as e:
        monitor_command(["toy", "--log", str(bad)])
    assert e.value.code == 2 and "live.jsonl:1: a toy log line needs 'query', 'docs'; missing docs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        monitor_command(["nope", "--log", str(bad)])
    assert e.value.code == 2 and "unknown stage 'nope'" in capsys.readouterr().err


def test_drift_check_message_names_the_next_round():
    base = {"divergence": 0.30}
    drifted, msg = check("toy", {"divergence": 0.45, "kendall_tau": 0.1, "n": 40}, base, 0.1)
    assert drifted and "DRIFT" in msg and "0.4500 exceeds the baseline 0.3000 + margin 0.1000 on 40 sampled inputs" in msg
    assert "kendall_tau 0.1000" in msg and "ragdistill toy teach data.extra=queue, then train" in msg
    drifted, msg = check("toy", {"divergence": 0.40, "n": 40}, base, 0.1)
    assert not drifted and msg.startswith("[toy] ok: student-teacher divergence 0.4000 within the baseline 0.3000")


def test_export_writes_the_baseline_of_the_held_out_inputs(toy, trained):
    """Every export measures the student-teacher divergence on the first monitor.baseline_inputs held-out
    inputs: the mean of the stage's disagreement hook, computed here independently of the monitor."""
    work, cfg = trained
    base = read_json(default_baseline_path(cfg, "toy"))
    assert default_baseline_path(cfg, "toy") == work / "toy" / "export" / BASELINE_FILE
    records = toy.held_out(cfg, 8)
    student, teacher = toy.predictor(cfg, "student")(records), toy.predictor(cfg, "teacher")(records)
    expected = np.mean([toy.disagreement(r, s, t) for r, s, t in zip(records, student, teacher, strict=True)])
    assert base["stage"] == "toy" and base["metrics"]["n"] == 8 and base["source"] == "held-out test: 8 inputs"
    assert base["divergence"] == pytest.approx(expected) and 0 <= base["divergence"] < 0.5  # distilled: closer than chance
    export = read_json(work / "toy" / "export" / "export.json")
    assert export["details"]["monitor_baseline"] == {"path": str(default_baseline_path(cfg, "toy")), "divergence": base["divergence"], "n": 8}
    # monitor.baseline_inputs=0: no baseline measured
    off = compose("toy_schema", [f"paths.work_dir={work / 'off'}", "monitor.baseline_inputs=0"])
    assert write_monitor_baseline(toy, off) is None and not default_baseline_path(off, "toy").exists()


def test_a_logged_output_is_not_run_again(toy, trained):
    """A log line carrying the student's output (``Stage.output_field``) is measured as logged."""
    _, cfg = trained

    class Logged(type(toy)):
        output_field = "student_scores"

    records = _lines(toy.held_out(cfg, 4))
    teacher = toy.predictor(cfg, "teacher")(records)
    as_teacher = [{**r, "student_scores": t} for r, t in zip(records, teacher, strict=True)]
    logged = measure(Logged(), cfg, as_teacher)
    assert logged["n"] == 4 and logged["divergence"] == pytest.approx(0.0, abs=1e-12)  # the logged scores are the teacher's
    assert measure(Logged(), cfg, records)["divergence"] == pytest.approx(measure(toy, cfg, records)["divergence"])


def test_monitor_command_exit_codes(toy, trained, tmp_path, capsys):
    """Baseline from one log, a check that passes (exit 0), one that flags drift (exit 1), and errors (exit 2)."""
    work, cfg = trained
    records = toy.held_out(cfg)
    student, teacher = toy.predictor(cfg, "student")(records), toy.predictor(cfg, "teacher")(records)
    by_disagreement = sorted((toy.disagreement(r, s, t), i) for i, (r, s, t) in enumerate(zip(records, student, teacher, strict=True)))
    calm = [records[i] for _, i in by_disagreement[:6]]  # where student and teacher agree most
    wild = [records[i] for _, i in by_disagreement[-6:]]  # and least
    assert by_disagreement[-6][0] > by_disagreement[5][0]  # the two logs differ
    calm_log, wild_log = write_jsonl(tmp_path / "calm.jsonl", _lines(calm)), write_jsonl(tmp_path / "wild.jsonl", _lines(wild))
    common = [f"paths.work_dir={work}", "run.report_to=[]"]
    baseline = tmp_path / "baseline.json"
    monitor_command(["toy", "--log", str(calm_log), "--write-baseline", "--baseline", str(baseline), *common])  # exit 0
    written = read_json(baseline)
    assert written["source"] == str(calm_log) and written["divergence"] == pytest.approx(measure(toy, cfg, _lines(calm))["divergence"])
    assert "baseline written to" in capsys.readouterr().out

    monitor_command(["toy", "--log", str(calm_log), "--baseline", str(baseline), "--margin", "0", "--out", str(tmp_path / "ok.json"), *common])
    assert "[toy] ok" in capsys.readouterr().out
    out = read_json(tmp_path / "ok.json")
    assert out["metrics"]["divergence"] == pytest.approx(written["divergence"]) and out["baseline"] == written and out["margin"] == 0
    with pytest.raises(SystemExit) as e:
        monitor_command(["toy", "--log", str(wild_log), "--baseline", str(baseline), "--margin", "0.01", *common])
    assert e.value.code == 1 and "DRIFT" in capsys.readouterr().out
    # the default baseline is the one export wrote: the held-out inputs themselves are within it
    held = write_jsonl(tmp_path / "held.jsonl", _lines(records[:8]))
    monitor_command(["toy", "--log", str(held), "--margin", "0", *common])
    assert "[toy] ok" in capsys.readouterr().out

    for args, message in (
        (["--baseline", str(tmp_path / "none.json")], "none.json: no monitor baseline; the stage's export writes it"),
        (["--baseline", str(write_json(tmp_path / "bad.json", {"mean": 1.0}))], "bad.json: not a monitor baseline (no 'divergence')"),
        (["--margin", "-0.1"], "--margin -0.1: must be >= 0"),
    ):
        with pytest.raises(SystemExit) as e:
            monitor_command(["toy", "--log", str(calm_log), *args, *common])
        assert e.value.code == 2 and message in capsys.readouterr().err, args
    assert json.loads(baseline.read_text()) == written  # checking never rewrites the baseline

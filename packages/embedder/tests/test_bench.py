"""The bench scripts fail as the CLI does: a user error (here a work dir with no trained student) is one
line naming the fix and exit status 2, not a traceback (ragdistill.common.cli.run_script)."""

from __future__ import annotations

import os
import subprocess
import sys

from ragdistill.common.paths import project_home


def test_bench_on_a_work_dir_without_a_student_names_the_verb_to_run(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, str(project_home() / "bench/embedder.py"), f"paths.work_dir={tmp_path}",
                          "embedder.evaluate.systems=[student]", "run.log_level=WARNING"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (f"ragdistill: error: {tmp_path}/embedder/train/student: trained student not "
                                                   "found; run `ragdistill embedder train` first (same paths.work_dir)")


def test_merge_bench_scores_each_share_on_each_split(tmp_path):
    """bench/embedder_merge.py on a slice, with the undistilled student as the 'trained' one: every share
    merges a model with itself, so every row must equal the undistilled row; a bad share is one error line."""
    from ragdistill.common.models import resolve_model

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    script = str(project_home() / "bench/embedder_merge.py")
    student = resolve_model("minilm-l6")
    out = subprocess.run([sys.executable, script, student, "--weights", "0,0.5", "--data", "scifact,squad", "--teacher", "data.max_queries=4",
                          "data.max_docs=20", "student.max_length=32", "teacher.max_length=32"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split(" | ")[1:] for line in out.stdout.splitlines() if line.startswith(("| undistilled", "| base_weight"))]
    assert len(rows) == 3 and len(rows[0]) == 4
    assert all(r == rows[0] for r in rows) and all(0.0 <= float(v.strip(" |")) <= 1.0 for v in rows[0])
    teacher = [line.split(" | ")[1:] for line in out.stdout.splitlines() if line.startswith("| teacher (mpnet)")]
    assert len(teacher) == 1 and all(0.0 <= float(v.strip(" |")) <= 1.0 for v in teacher[0])
    bad = subprocess.run([sys.executable, script, student, "--weights", "0.5,1.5"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("ragdistill: error: --weights=1.5: the undistilled student's share must be in [0, 1]")

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

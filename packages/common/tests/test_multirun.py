"""``ragdistill <stage> <verb> -m a=1,2``: each job writes its own folder (the last job used to
replace the others' outputs), the label cache stays shared, and a later verb with the same sweep
finds each job's own outputs."""

from __future__ import annotations

import os
import subprocess
import sys

from omegaconf import OmegaConf

from ragdistill.common.config import compose
from ragdistill.common.io import read_json
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.stage import load_stages

TINY = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4", "embedder.train.args.max_steps=1",
    "embedder.train.val_fraction=0.34", "embedder.train.early_stopping_patience=0", "embedder.train.mse_corpus_docs=0",
]


def test_multirun_jobs_get_their_own_folders(tmp_path):
    work = tmp_path / "work"
    stage_verbs(load_stages()["embedder"])["teach"](compose("embedder", [f"paths.work_dir={work}", *TINY]))  # once, no sweep
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "ragdistill.common.cli", "embedder", "train", "-m", f"paths.work_dir={work}", *TINY,
                           "embedder.train.args.learning_rate=1e-5,3e-5"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = work / "multirun"
    names = sorted(p.name for p in jobs.iterdir())  # named for the swept values, as Hydra writes them
    assert [n.rsplit("=", 1)[0] for n in names] == ["embedder.train.args.learning_rate"] * 2
    assert sorted(float(n.rsplit("=", 1)[1]) for n in names) == [1e-5, 3e-5]
    for job in jobs.iterdir():
        lr = float(job.name.rsplit("=", 1)[1])
        ran = OmegaConf.load(job / "embedder" / "train" / "config.yaml")
        assert ran.embedder.train.args.learning_rate == lr
        assert ran.paths.work_dir == str(job) and ran.paths.label_cache == str(work / "cache" / "labels.sqlite")  # one shared cache
        assert read_json(job / "embedder" / "train" / "train.json")["train_steps"] == 1
        assert (job / "embedder" / "train" / "student").is_dir()
        assert (job / "embedder" / "teach").resolve() == work / "embedder" / "teach"  # teach's outputs, linked, not redone
        assert not (job / "cache").exists()
    assert not (work / "embedder" / "train").exists()  # no job wrote the plain run's folder

"""Config composition and the CLI: typos are errors naming the key, --help lists the groups."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError


def _cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ragdistill.common.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_compose_applies_groups_and_overrides(tmp_path):
    cfg = compose("embedder", ["data.max_queries=5", f"paths.work_dir={tmp_path}"])
    assert cfg.teacher.model == "mpnet" and cfg.student.model == "minilm-l6"
    assert cfg.data.max_queries == 5
    assert cfg.paths.label_cache == f"{tmp_path}/cache/labels.sqlite"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("teacher.modle=x", r"Key 'modle' not in 'TeacherConfig'"),
        ("data.max_queries=many", r"Value 'many' of type 'str' could not be converted to Integer"),
        ("teacher=gpt9", r"Could not find 'teacher/gpt9'"),
    ],
)
def test_config_typos_name_the_key(override, message):
    with pytest.raises(RagdistillError, match=message):
        compose("embedder", [override])


def test_cli_help_lists_stages_verbs_and_groups():
    top = _cli("--help")
    assert top.returncode == 0
    for s in ("embedder", "reranker", "generator", "query_rewriter", "demo"):
        assert s in top.stdout
    verb_help = _cli("embedder", "train", "--help")
    assert verb_help.returncode == 0
    assert "== Configuration groups ==" in verb_help.stdout
    groups = dict(ln.split(": ", 1) for ln in verb_help.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0].splitlines()
                  if ": " in ln and not ln.startswith("Compose"))
    assert set(groups) == {"teacher", "student", "data", "routing"}  # not the accelerate files of conf/launcher, not other stages'
    assert "mpnet" in groups["teacher"].split(", ") and not any(o.endswith("_schema") for v in groups.values() for o in v.split(", "))
    assert "query_rewriter: term_selection" in _cli("query_rewriter", "train", "--help").stdout  # a stage's own group


def test_top_level_help_imports_no_heavy_library():
    """`ragdistill --help` loads every stage through its entry point: stage packages import nothing heavy
    at module level, so the help is fast (the import graph, not a clock, is what is checked)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "ragdistill.common.cli", "--help"], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert r.returncode == 0 and "embedder" in r.stdout
    imported = {ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    heavy = {"torch", "transformers", "sentence_transformers", "datasets", "mteb", "onnxruntime", "ray", "peft", "trl", "scipy", "sklearn"}
    assert not heavy & imported, sorted(heavy & imported)


def test_cli_errors_are_clear():
    r = _cli("embeder", "train")
    assert r.returncode == 2 and "unknown stage or command 'embeder'" in r.stderr
    r = _cli("embedder", "distil")
    assert r.returncode == 2 and "stage 'embedder' has no verb 'distil'" in r.stderr
    r = _cli("embedder", "train", "student.modle=x")
    assert r.returncode == 2 and "Key 'modle' not in 'StudentConfig'" in r.stderr

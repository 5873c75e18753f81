"""The CLI's exit codes a user and a script rely on: a config error is one line and exit 2 (even a
typo added with Hydra's ``+``), Ctrl-C during ``teach`` is one line and exit 130 and keeps the labels."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragdistill.common.cli", *args], capture_output=True, text=True, env=_env(), timeout=300)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # Hydra's own hint for a typo is to add it with '+': the key would then be silently ignored
        (["+embedder.teach.negatives_per_qury=2"], r"embedder\.teach\.negatives_per_qury is not a setting; did you mean embedder\.teach\.negatives_per_query\?"),
        (["teacher.modle=x"], r"Key 'modle' not in 'TeacherConfig'"),
        (["data.max_queries=many"], r"could not be converted to Integer"),
        # a multirun is checked before its first job starts
        (["-m", "teacher.modle=a,b"], r"Key 'modle' not in 'TeacherConfig'"),
    ],
)
def test_config_errors_are_one_message_and_exit_2(tmp_path, overrides, message):
    import re

    r = _cli("embedder", "train", f"paths.work_dir={tmp_path}", *overrides)
    assert r.returncode == 2, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "embedder").exists()  # nothing ran


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_ctrl_c_during_teach_is_one_line_exit_130_and_keeps_the_labels(tmp_path):
    work = tmp_path / "work"
    db = work / "cache" / "labels.sqlite"
    # far more labelling than the test waits for (the whole SciFact corpus, no shipped labels): the
    # interrupt lands mid-run however fast the machine is
    cmd = [sys.executable, "-m", "ragdistill.common.cli", "embedder", "teach", f"paths.work_dir={work}", "run.report_to=[]",
           "embedder.teach.shipped_labels=[]", "teacher.batch_size=4"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        # the child's signal that it has committed labels: the first batch in the cache (the limit is a guard only)
        guard = time.monotonic() + 900
        while _rows(db) == 0:
            assert p.poll() is None, p.communicate()[1][-3000:]
            assert time.monotonic() < guard, "no label committed in 900 s"
            time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert lines == [f"ragdistill: interrupted. Teacher labels made so far are kept in {db}; rerun the same command to resume "
                     "(only the missing labels are made)."], err[-3000:]
    assert _rows(db) >= 1  # what was committed before the interrupt is still there
    assert not (work / "embedder" / "teach" / "teach.json").exists()  # no result claims a finished teach


def test_an_unknown_teacher_model_says_what_names_work(tmp_path):
    r = _cli("embedder", "teach", f"paths.work_dir={tmp_path}", "run.report_to=[]", "teacher.model=mpnet-base-v9",
             "embedder.teach.shipped_labels=[]", "data.max_queries=2", "data.max_docs=4")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "model 'mpnet-base-v9' is neither a packaged short name (minilm-l6, mpnet," in r.stderr
    assert "nor an existing local folder" in r.stderr and "a hub id (org/name) needs the network" in r.stderr


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (our logging set up the way the CLI does); it must succeed."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def test_a_library_that_sets_its_own_log_level_stays_quiet():
    """bm25s sets its logger to DEBUG when imported (after our logging setup): its index-building lines
    must still not reach the output, while our own INFO lines do."""
    code = ("from ragdistill.common.logging import setup_logging, get_logger\n"
            "setup_logging('INFO')\n"
            "import bm25s\n"
            "r = bm25s.BM25(); r.index(bm25s.tokenize(['a cat sat', 'a dog ran'], show_progress=False), show_progress=False)\n"
            "get_logger('ragdistill.test').info('ours')\n")
    r = _python(code)
    assert "ragdistill.test: ours" in r.stderr and "bm25s" not in r.stderr, r.stderr


def test_onnx_export_false_alarms_are_quiet_and_other_warnings_are_not():
    """What an ONNX export of a tied-embedding causal LM prints through optimum 2.1 / transformers 4.57
    (see common.logging._OnnxExportAlarms): the real library calls, silenced; another warning still shows."""
    code = ("import logging, warnings\n"
            "from ragdistill.common.logging import setup_logging\n"
            "setup_logging('INFO')\n"
            "import torch\n"
            "from transformers import PretrainedConfig\n"
            "PretrainedConfig().torch_dtype  # what optimum's exporter does\n"
            "from transformers.utils import logging as hf_logging\n"
            "opt = hf_logging.get_logger()  # what optimum.onnx.transformations_utils logs with\n"
            "opt.warning('Found different candidate ONNX initializers (likely duplicate) for the tied weights:')\n"
            "opt.warning('\\tlm_head.weight: {1}')\n"
            "warnings.warn('Converting a tensor to a Python boolean might cause the trace to be incorrect.', torch.jit.TracerWarning)\n"
            "logging.getLogger('sentence_transformers.backend.utils').warning('Saving the exported ONNX model is heavily recommended to avoid it')\n"
            "logging.info('Quantization parameters for tensor:\"/embeddings/x\" not specified')  # onnxruntime's quantizer\n"
            "logging.getLogger('sentence_transformers.base.model').info('Loading SentenceTransformer model from x')\n"
            "from transformers import BertForSequenceClassification\n"
            "from ragdistill.common.models import resolve_model\n"
            "BertForSequenceClassification.from_pretrained(resolve_model('minilm-l6'), num_labels=1)  # a new head, made on purpose\n"
            "warnings.warn('torch.cuda.amp.GradScaler is enabled, but CUDA is not available.  Disabling.')  # colbert-ai on CPU\n"
            "opt.warning('something else')\n")
    r = _python(code)
    assert "something else" in r.stderr, r.stderr
    for noise in ("torch_dtype", "candidate ONNX initializers", "lm_head.weight", "TracerWarning", "Python boolean", "heavily recommended",
                  "Quantization parameters", "Loading SentenceTransformer", "newly initialized", "TRAIN this model", "GradScaler"):
        assert noise not in r.stderr, r.stderr

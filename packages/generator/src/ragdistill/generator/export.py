"""generator export: the merged student for vLLM (bf16 safetensors) and for onnxruntime (ONNX with a KV
cache, fp32 and int8), the serve commands, and the parity gate on greedy answers.

Writes ``<work_dir>/generator/export/`` (beside ``export.json``, whose ``details`` hold the sizes, the
commands and the parity answers):

- ``model/``: the merged student in bf16 safetensors (train saves it in ``generator.train.save_dtype``)
  with its tokenizer, chat template and generation config (end-of-turn token, greedy defaults):
  ``vllm serve model/`` serves it as is;
- ``onnx/`` and ``onnx_int8/``: the same model through optimum as ``ORTModelForCausalLM`` graphs with
  past key values, fp32 and int8 (``int8_method``: weight-only 8-bit blocks by default, or dynamic), the CPU production runtime
  (``pipeline.generator=student_onnx`` / ``student_onnx_int8``); the export code is common's
  (:mod:`ragdistill.common.onnx_causal_lm`), the one the query rewriter's SmolLM2 student uses;
- ``adapter/``: the unmerged LoRA adapter (LoRA training only), for vLLM Multi-LoRA serving;
- ``prompt.json``: the prompt settings, so clients build the exact messages the student was trained on;
- ``serve.sh``: the exact ``vllm serve`` command, the Multi-LoRA variant and the speculative-decoding
  one (the teacher served with the student as its draft model), checked for syntax and for a shared
  vocabulary (a draft model must tokenize like its target).

The gate: on ``smoke_questions`` held-out questions, the greedy answers of each ONNX variant are
compared with the exported model's on transformers (``onnx`` is held to ``min_parity``, ``onnx_int8``
to ``min_parity_quantized``), and the bf16 merge with the fp32 base + unmerged adapter's (``merged``,
a rounding of the weights: held to ``min_parity_quantized``).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ragdistill.common.config import apply_run_settings
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, write_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.models import portable_tokenizer, resolve_model
from ragdistill.common.paths import export_dir, stage_dir, student_dir
from ragdistill.common.results import ExportResult, Variant
from ragdistill.generator.examples import load_examples
from ragdistill.generator.models import is_model_dir, load_tokenizer
from ragdistill.generator.prompts import build_messages

log = get_logger(__name__)
SERVED_NAME = "ragdistill-generator"
STAGE = "generator"
MERGE_PARITY = "share of identical greedy answers, merged export vs base + unmerged adapter"
ONNX_PARITY = "share of identical greedy answers, ONNX vs the exported model on transformers"


def serve_commands(model_dir: Path, adapter_dir: Path, base: str, lora_rank: int, port: int, max_model_len: int) -> dict[str, str]:
    """The ``vllm serve`` command for the merged model, and the Multi-LoRA one for the adapter."""
    q = shlex.quote
    merged = f"vllm serve {q(str(model_dir))} --served-model-name {SERVED_NAME} --max-model-len {max_model_len} --port {port} --generation-config auto"
    lora = (f"vllm serve {q(base)} --enable-lora --lora-modules {SERVED_NAME}-lora={q(str(adapter_dir))} "
            f"--max-lora-rank {lora_rank} --max-model-len {max_model_len} --port {port}")
    return {"merged": merged, "multi_lora": lora}


def speculative_command(teacher: str, draft_dir: Path, port: int, max_model_len: int, num_tokens: int) -> str:
    """``vllm serve <teacher> --speculative-config {...}``: the teacher answers, the distilled student drafts
    ``num_tokens`` tokens a step that the teacher verifies in one pass (same output, fewer teacher steps)."""
    q = shlex.quote
    spec = json.dumps({"model": str(draft_dir), "num_speculative_tokens": int(num_tokens), "method": "draft_model"})
    return (f"vllm serve {q(teacher)} --served-model-name {SERVED_NAME}-teacher --max-model-len {max_model_len} "
            f"--port {port} --speculative-config {q(spec)}")


def check_serve_command(cmd: str) -> dict[str, Any]:
    """Syntax of a ``vllm serve`` command: vLLM's own argument parser when vLLM is importable (GPU
    machines), else its shape (``vllm serve MODEL`` then ``--flag value`` pairs, a JSON
    ``--speculative-config`` naming an existing draft folder and a positive token count)."""
    argv = shlex.split(cmd)
    if argv[:2] != ["vllm", "serve"] or len(argv) < 3 or argv[2].startswith("-"):
        raise RagdistillError(f"not a `vllm serve MODEL ...` command: {cmd}")
    if importlib.util.find_spec("vllm") is not None:
        try:
            from vllm.entrypoints.openai.cli_args import make_arg_parser
            from vllm.utils import FlexibleArgumentParser

            parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
        except ImportError:
            parser = None  # another vLLM layout: fall back to the shape check
        if parser is not None:
            try:
                parser.parse_args(["--model", argv[2], *argv[3:]])
            except SystemExit as e:  # argparse reports the bad option on stderr and exits
                raise RagdistillError(f"vLLM's argument parser rejects the command (exit {e.code}): {cmd}") from None
            return {"checked_by": "vllm argument parser", "ok": True}
    opts, rest = {}, argv[3:]
    if len(rest) % 2:
        raise RagdistillError(f"vllm serve: options must be --flag value pairs: {rest}")
    for flag, value in zip(rest[::2], rest[1::2], strict=True):
        if not flag.startswith("--") or value.startswith("--"):
            raise RagdistillError(f"vllm serve: {flag!r} {value!r} is not a --flag value pair")
        opts[flag] = value
    if "--speculative-config" in opts:
        try:
            spec = json.loads(opts["--speculative-config"])
        except json.JSONDecodeError as e:
            raise RagdistillError(f"vllm serve: --speculative-config is not JSON ({e.msg})") from e
        if not Path(str(spec.get("model", ""))).is_dir() or int(spec.get("num_speculative_tokens", 0)) < 1:
            raise RagdistillError(f"vllm serve: --speculative-config needs an existing draft model folder and num_speculative_tokens >= 1: {spec}")
    return {"checked_by": "shape (vLLM not importable here)", "ok": True}


def speculative_decoding(cfg: Any, draft_dir: Path) -> dict[str, Any]:
    """The speculative-decoding command for this teacher and student, its syntax check, and whether the
    two share a vocabulary (vLLM verifies draft tokens by id: a draft from another tokenizer family is useless)."""
    from ragdistill.generator.models import check_same_tokenizer

    t, ex = cfg.teacher, cfg.generator.export
    if t.backend not in ("causal_lm", "vllm"):
        return {"command": None, "reason": f"teacher.backend={t.backend}: not a model this machine can hand to `vllm serve`"}
    teacher = resolve_model(t.model) if t.backend == "causal_lm" else str(t.model)
    cmd = speculative_command(teacher, draft_dir.resolve(), int(ex.port), int(ex.max_model_len), int(ex.speculative_tokens))
    out: dict[str, Any] = {"command": cmd, "syntax": check_serve_command(cmd)}
    try:
        check_same_tokenizer(t.model, str(draft_dir))
        out.update(draft_compatible=True, reason="teacher and student share one vocabulary")
    except RagdistillError as e:
        out.update(draft_compatible=False, reason=str(e).split(". Use ")[0])
    except Exception as e:  # e.g. a hub teacher whose tokenizer is not reachable offline
        out.update(draft_compatible=None, reason=f"could not compare tokenizers: {type(e).__name__}: {e}")
    return out


def _write_model(merged: Path, dest: Path, max_new_tokens: int, dtype: str) -> None:
    """The student as served: weights in ``dtype`` (bf16 by default; a student saved in another dtype is
    cast), the tokenizer readable alike by transformers 4 and vLLM, greedy generation defaults with the end-of-turn token."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    with atomic_path(dest) as tmp:
        shutil.copytree(merged, tmp)
        conf = AutoConfig.from_pretrained(merged)
        saved = getattr(conf, "dtype", None) or getattr(conf, "torch_dtype", None)
        if str(saved).removeprefix("torch.") != dtype:
            for f in tmp.glob("*.safetensors*"):
                f.unlink()
            AutoModelForCausalLM.from_pretrained(merged, dtype=getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
        tok = load_tokenizer(str(merged))
        tok.save_pretrained(tmp, legacy_format=False)  # tokenizer.json (+ config, chat_template.jinja); no slow-tokenizer files
        portable_tokenizer(tmp)  # vLLM (transformers 5) must read the prompt as transformers 4 does
        gen = GenerationConfig.from_pretrained(merged) if (merged / "generation_config.json").exists() else GenerationConfig()
        gen.eos_token_id, gen.pad_token_id = tok.eos_token_id, tok.pad_token_id
        gen.do_sample, gen.max_new_tokens = False, max_new_tokens
        gen.save_pretrained(tmp)


def torch_answers(model_dir: str | Path, conversations: list[Any], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers of a transformers folder (loaded in fp32, as every torch student here)."""
    from ragdistill.generator.students import LocalGenerator

    return LocalGenerator(str(model_dir), max_new_tokens, batch_size).generate(conversations)


def unmerged_answers(base: str, adapter_dir: Path, conversations: list[Any], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers of the fp32 base with the LoRA adapter on top (not merged): what the merge must reproduce."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ragdistill.generator.students import LocalGenerator

    gen = LocalGenerator(base, max_new_tokens, batch_size)
    gen.backend.model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(adapter_dir)).eval()
    return gen.generate(conversations)


def _dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def export(cfg: Any) -> ExportResult:
    """The merged student as a vLLM-ready folder and as ONNX (fp32, int8), the adapter, prompt.json and
    serve.sh; the parity of each variant on greedy answers, and the gate."""
    from ragdistill.common.onnx_causal_lm import (
        OnnxChatGenerator,
        export_causal_lm,
        onnx_size_mb,
        parity,
        quantize_int8,
        quantize_int8_weights,
    )

    apply_run_settings(cfg)
    ex = cfg.generator.export
    train_dir, out, model_dir = stage_dir(cfg, STAGE, "train"), stage_dir(cfg, STAGE, "export"), export_dir(cfg, STAGE)
    merged, adapter = student_dir(cfg, STAGE), train_dir / "adapter"
    if not is_model_dir(merged):
        raise RagdistillError(f"{train_dir}: no merged student; run `ragdistill generator train` first (it writes student/)")
    lora = (adapter / "adapter_config.json").is_file()
    max_new, bs = int(cfg.generator.student_max_new_tokens), int(cfg.generator.evaluate.batch_size)
    _write_model(merged, model_dir, max_new, str(cfg.generator.train.save_dtype))
    if lora:
        with atomic_path(out / "adapter") as tmp:
            shutil.copytree(adapter, tmp)
    write_json(out / "prompt.json", OmegaConf.to_container(cfg.generator.prompt, resolve=True, enum_to_str=True))
    base = resolve_model(cfg.student.model)
    cmds = serve_commands(model_dir.resolve(), (out / "adapter").resolve(), base, int(cfg.generator.train.lora.r), int(ex.port), int(ex.max_model_len))
    spec = speculative_decoding(cfg, model_dir)
    spec_text = ""
    if spec["command"]:
        spec_text = (f"\n# Speculative decoding: the teacher answers, this student drafts {ex.speculative_tokens} tokens a step "
                     f"({'usable: ' if spec['draft_compatible'] else 'NOT usable as is: '}{spec['reason']}):\n# {spec['command']}\n")
    lora_text = f"\n# Multi-LoRA: the base student with the adapter as model '{SERVED_NAME}-lora':\n# {cmds['multi_lora']}\n" if lora else ""
    write_text_atomic(out / "serve.sh", "#!/bin/sh\n# Serve the distilled generator with vLLM (OpenAI-compatible API on the port below).\n"
                      f"# Merged weights:\n{cmds['merged']}\n{lora_text}" + spec_text)
    (out / "serve.sh").chmod(0o755)
    info: dict[str, Any] = {"model_dir": str(model_dir), "model_mb": _dir_mb(model_dir), "vllm_serve": cmds["merged"],
                            "vllm_serve_speculative": spec}
    if lora:
        info.update(adapter_dir=str(out / "adapter"), adapter_mb=_dir_mb(out / "adapter"), vllm_serve_multi_lora=cmds["multi_lora"])
    onnx_dirs: dict[str, Path] = {}
    if ex.onnx:
        t0 = time.perf_counter()
        onnx_dirs["onnx"] = export_causal_lm(model_dir, out / "onnx")
        if ex.int8:
            if str(ex.int8_method) == "weight_only":
                onnx_dirs["onnx_int8"] = quantize_int8_weights(out / "onnx", out / "onnx_int8", accuracy_level=ex.int8_accuracy_level)
            else:
                onnx_dirs["onnx_int8"] = quantize_int8(out / "onnx", out / "onnx_int8")
            info["int8_method"] = str(ex.int8_method)
        info["onnx_seconds"] = time.perf_counter() - t0
    result = ExportResult(STAGE, model=str(model_dir), details=info)
    if ex.smoke_test:
        examples = load_examples(cfg, cfg.data.test_split, int(ex.smoke_questions))
        convs = [build_messages(e.question, e.contexts, cfg.generator.prompt) for e in examples]
        result.n_items = len(convs)
        reference = torch_answers(model_dir, convs, max_new, bs)
        answers: dict[str, list[str]] = {"model": reference}
        if not all(reference):
            raise RagdistillError(f"export smoke test failed for {model_dir}: an empty answer ({reference}); the student was not "
                                  "trained enough to answer (more generator.train.args.max_steps?)")
        if lora:
            answers["unmerged_adapter"] = unmerged_answers(base, out / "adapter", convs, max_new, bs)
            result.variants["merged"] = Variant(str(model_dir), parity(answers["unmerged_adapter"], reference), MERGE_PARITY,
                                                quantized=True, size_mb=info["model_mb"])
        for name, d in onnx_dirs.items():
            answers[name] = OnnxChatGenerator(d, max_new, bs).generate(convs)
            result.variants[name] = Variant(str(d), parity(reference, answers[name]), ONNX_PARITY, quantized=name == "onnx_int8",
                                            size_mb=onnx_size_mb(d))
        info["smoke_test"] = {"engine": "transformers + onnxruntime", "questions": len(convs), "answers": answers, "ok": True}
    sizes = ", ".join(f"{n} {v.parity:.0%} parity, {v.size_mb:.0f} MB" for n, v in result.variants.items())
    log.info("exported %s (%.0f MB)%s; serve it with: %s", model_dir, info["model_mb"], "; " + sizes if sizes else "", cmds["merged"])
    result.gate(float(ex.min_parity), float(ex.min_parity_quantized))
    return result

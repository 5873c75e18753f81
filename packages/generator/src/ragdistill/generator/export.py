"""generator export: a vLLM-ready directory, the serve commands, and a smoke test.

Writes ``<work_dir>/generator/export/`` (beside ``export.json``, whose ``details`` hold the sizes, the
commands and the smoke test's outcome):

- ``model/``: the merged student in safetensors with its tokenizer, chat template and generation
  config (end-of-turn token, greedy defaults): ``vllm serve model/`` serves it as is;
- ``adapter/``: the unmerged LoRA adapter, for vLLM Multi-LoRA serving over the base student;
- ``prompt.json``: the prompt settings, so clients build the exact messages the student was trained on;
- ``serve.sh``: the exact ``vllm serve`` command, the Multi-LoRA variant (``--enable-lora --lora-modules``)
  and the speculative-decoding one: the teacher served with the student as its draft model
  (``--speculative-config``), checked for syntax (vLLM's own parser when vLLM is importable, else the
  command's shape) and for a shared vocabulary (a draft model must tokenize like its target).

Smoke test: with vLLM importable (GPU machine) the export is loaded in vLLM and answers test
questions; otherwise it is loaded with transformers and answers them, and the merge is checked by
comparing its greedy answers with the base + unmerged adapter's: that share is the ``merged``
variant's parity, held to ``generator.export.min_parity`` (the export gate).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ragdistill.common.config import apply_run_settings
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, write_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.models import resolve_model
from ragdistill.common.paths import export_dir, stage_dir, student_dir
from ragdistill.common.results import ExportResult, Variant
from ragdistill.generator.examples import load_examples
from ragdistill.generator.models import is_model_dir, load_tokenizer
from ragdistill.generator.prompts import build_messages

log = get_logger(__name__)
SERVED_NAME = "ragdistill-generator"
STAGE = "generator"
MERGE_PARITY = "share of identical greedy answers, merged export vs base + unmerged adapter"


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


def _write_model(merged: Path, dest: Path, max_new_tokens: int) -> None:
    from transformers import GenerationConfig

    with atomic_path(dest) as tmp:
        shutil.copytree(merged, tmp)
        tok = load_tokenizer(str(merged))
        tok.save_pretrained(tmp, legacy_format=False)  # tokenizer.json (+ config, chat_template.jinja); no slow-tokenizer files
        gen = GenerationConfig.from_pretrained(merged) if (merged / "generation_config.json").exists() else GenerationConfig()
        gen.eos_token_id, gen.pad_token_id = tok.eos_token_id, tok.pad_token_id
        gen.do_sample, gen.max_new_tokens = False, max_new_tokens
        gen.save_pretrained(tmp)


def smoke_test(model_dir: Path, adapter_dir: Path, base: str, conversations: list[Any], max_new_tokens: int) -> dict[str, Any]:
    """Generate with the export (vLLM when importable, else transformers); on the transformers path
    also check the merged weights answer exactly like the base + unmerged adapter."""
    if importlib.util.find_spec("vllm") is not None:
        from vllm import LLM, SamplingParams

        llm = LLM(model=str(model_dir), max_model_len=2048)
        outs = llm.chat(conversations, SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
        answers = [o.outputs[0].text.strip() for o in outs]
        return {"engine": "vllm", "answers": answers, "ok": all(answers)}
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(str(model_dir), padding_side="left")

    def answer(model: Any) -> list[str]:
        res = []
        for c in conversations:
            ids = tok.apply_chat_template(c, add_generation_prompt=True, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            res.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
        return res

    exported = answer(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval())
    unmerged = answer(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(adapter_dir)).eval())
    parity = sum(a == b for a, b in zip(exported, unmerged, strict=True)) / max(1, len(exported))
    return {"engine": "transformers (vLLM not importable here)", "answers": exported, "unmerged_adapter_answers": unmerged,
            "merge_parity": parity, "ok": all(exported)}


def _dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def export(cfg: Any) -> ExportResult:
    """The merged student as a vLLM-ready folder, the adapter, prompt.json and serve.sh; the smoke test and the gate."""
    apply_run_settings(cfg)
    ex = cfg.generator.export
    train_dir, out, model_dir = stage_dir(cfg, STAGE, "train"), stage_dir(cfg, STAGE, "export"), export_dir(cfg, STAGE)
    merged, adapter = student_dir(cfg, STAGE), train_dir / "adapter"
    if not is_model_dir(merged) or not (adapter / "adapter_config.json").is_file():
        raise RagdistillError(f"{train_dir}: no merged student / adapter; run `ragdistill generator train` first (it writes student/ and adapter/)")
    max_new = int(cfg.generator.student_max_new_tokens)
    _write_model(merged, model_dir, max_new)
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
    write_text_atomic(out / "serve.sh", "#!/bin/sh\n# Serve the distilled generator with vLLM (OpenAI-compatible API on the port below).\n"
                      f"# Merged weights:\n{cmds['merged']}\n\n# Multi-LoRA: the base student with the adapter as model '{SERVED_NAME}-lora':\n# {cmds['multi_lora']}\n"
                      + spec_text)
    (out / "serve.sh").chmod(0o755)
    info: dict[str, Any] = {"model_dir": str(model_dir), "adapter_dir": str(out / "adapter"), "model_mb": _dir_mb(model_dir),
                            "adapter_mb": _dir_mb(out / "adapter"), "vllm_serve": cmds["merged"], "vllm_serve_multi_lora": cmds["multi_lora"],
                            "vllm_serve_speculative": spec}
    result = ExportResult(STAGE, model=str(model_dir), details=info)
    if ex.smoke_test:
        examples = load_examples(cfg, cfg.data.test_split, int(ex.smoke_questions))
        convs = [build_messages(e.question, e.contexts, cfg.generator.prompt) for e in examples]
        smoke = info["smoke_test"] = smoke_test(model_dir, out / "adapter", base, convs, max_new)
        result.n_items = len(convs)
        if not all(smoke["answers"]):
            raise RagdistillError(f"export smoke test failed for {model_dir}: an empty answer ({smoke})")
        if "merge_parity" in smoke:  # the transformers path compares the merge with base + adapter
            result.variants["merged"] = Variant(str(model_dir), float(smoke["merge_parity"]), MERGE_PARITY, quantized=False,
                                                size_mb=info["model_mb"])
    print(f"[generator export] {model_dir} ({info['model_mb']:.0f} MB) + adapter ({info['adapter_mb']:.1f} MB); "
          f"smoke test: {info.get('smoke_test', {}).get('engine', 'skipped')}\n  {cmds['merged']}\n  {cmds['multi_lora']}", flush=True)
    result.gate(float(ex.min_parity), float(ex.min_parity_quantized))
    return result

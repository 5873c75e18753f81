"""Teacher labelling speed for the generator: transformers' batched ``generate`` vs the vLLM CPU engine.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generator_labelling.py [--n 32] [--batch-sizes 4,8,16] [key=value ...]

Both engines answer the same ``--n`` training conversations (the prompts ``ragdistill generator
teach`` sends, built from the same config overrides) greedily with the stage's ``max_new_tokens``.
transformers runs in this process (``teacher.backend=causal_lm``, fp32, one batch size after the
other); vLLM runs in ``.venv-vllm`` (``make vllm-env``) as an offline ``vllm.LLM`` over all
prompts at once (continuous batching). Prints labels/s of each (engine start excluded and
included), the speed-up, and how many replies the two engines agree on word for word. Nothing is
written to the label cache: this measures, ``teach`` labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

VLLM_SCRIPT = r"""
import json, sys, time


def main():
    t0 = time.perf_counter()
    from vllm import LLM, SamplingParams
    spec = json.load(open(sys.argv[1]))
    llm = LLM(model=spec["model"], dtype=spec["dtype"], max_model_len=spec["max_model_len"], enforce_eager=True, seed=0)
    t1 = time.perf_counter()
    outs = llm.chat(spec["conversations"], SamplingParams(temperature=0.0, max_tokens=spec["max_new_tokens"]), use_tqdm=False)
    t2 = time.perf_counter()
    json.dump({"replies": [o.outputs[0].text.strip() for o in outs], "start_s": t1 - t0, "label_s": t2 - t1,
               "out_tokens": sum(len(o.outputs[0].token_ids) for o in outs)}, open(sys.argv[2], "w"))


if __name__ == "__main__":  # vLLM starts its engine core in a spawned process
    main()
"""


def vllm_python() -> Path:
    from ragdistill.common.paths import project_home

    return project_home() / ".venv-vllm" / "bin" / "python"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32, help="training conversations labelled by each engine (default 32)")
    p.add_argument("--batch-sizes", default="4", help="transformers batch sizes to time, comma-separated (default 4; 16 was slower here)")
    p.add_argument("--vllm-dtype", default="float32", help="vLLM engine dtype (default float32, as the transformers teacher)")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("overrides", nargs="*", help="generator config overrides")
    a = p.parse_args(argv)

    import torch

    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.models import resolve_model
    from ragdistill.common.teachers.local import HFCausalLMTeacher
    from ragdistill.generator.examples import load_examples
    from ragdistill.generator.prompts import build_messages
    from ragdistill.generator.teachers import teacher_max_new_tokens

    cfg = compose("generator", ["run.report_to=[]", *a.overrides])
    apply_run_settings(cfg)
    examples = load_examples(cfg, cfg.data.train_split, a.n)
    convs = [build_messages(e.question, e.contexts, cfg.generator.prompt) for e in examples]
    mnt = teacher_max_new_tokens(cfg)
    model = resolve_model(cfg.teacher.model)
    print(f"[bench labelling] {len(convs)} SQuAD train conversations, teacher {cfg.teacher.model}, max_new_tokens {mnt}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    hf_replies: list[str] = []
    t0 = time.perf_counter()
    teacher = HFCausalLMTeacher(cfg.teacher.model, max_new_tokens=mnt, batch_size=4)
    load_s = time.perf_counter() - t0
    for bs in [int(x) for x in a.batch_sizes.split(",")]:
        teacher.batch_size = bs
        t1 = time.perf_counter()
        hf_replies = teacher.generate(convs)
        dt = time.perf_counter() - t1
        rows.append((f"transformers generate, batch {bs}", load_s, dt))
        print(f"  transformers batch {bs}: {len(convs) / dt:.3f} labels/s ({dt:.1f} s; load {load_s:.1f} s)", flush=True)
    del teacher
    py = vllm_python()
    vllm_replies: list[str] | None = None
    if not py.exists():
        print(f"  vLLM: {py} missing (make vllm-env); skipped")
    else:
        with tempfile.TemporaryDirectory() as d:
            spec, out, script = Path(d) / "spec.json", Path(d) / "out.json", Path(d) / "run_vllm.py"
            spec.write_text(json.dumps({"model": model, "dtype": a.vllm_dtype, "max_model_len": a.max_model_len, "conversations": convs,
                                        "max_new_tokens": mnt}))
            script.write_text(VLLM_SCRIPT)
            env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
            t1 = time.perf_counter()
            r = subprocess.run([str(py), str(script), str(spec), str(out)], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t1
            if r.returncode != 0:
                print(f"  vLLM failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
            else:
                res = json.loads(out.read_text())
                vllm_replies = res["replies"]
                rows.append((f"vLLM CPU offline engine ({a.vllm_dtype})", res["start_s"], res["label_s"]))
                print(f"  vLLM: {len(convs) / res['label_s']:.3f} labels/s ({res['label_s']:.1f} s; engine start {res['start_s']:.1f} s; "
                      f"process {wall:.1f} s)", flush=True)
    print("\n| engine | labels/s (engine started) | labels/s incl. start | seconds |")
    print("|---|---|---|---|")
    base = rows[0][2]
    for name, start, dt in rows:
        print(f"| {name} | {len(convs) / dt:.3f} ({base / dt:.2f}x) | {len(convs) / (dt + start):.3f} | {dt:.1f} + {start:.1f} start |")
    if vllm_replies is not None:
        same = sum(x == y for x, y in zip(hf_replies, vllm_replies, strict=True))
        print(f"\nreplies equal word for word: {same}/{len(convs)}")
        for x, y in [(x, y) for x, y in zip(hf_replies, vllm_replies, strict=True) if x != y][:5]:
            print(f"  transformers: {x!r}\n  vLLM:         {y!r}")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))

"""Generator benchmark: the distilled student against the teacher, quality and speed.

Quality (``generator evaluate``: teach, train and export must have run with the same overrides):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generator.py [key=value ...]

prints the student/teacher ratios the issue sets as targets (token F1 and grounding >= 90% of the
teacher's) for the distilled student and each evaluated export (ONNX fp32 by default), with the
undistilled student beside them; the teacher's answers come from the label cache.

Speed (fair latency ratios, one question at a time, the same questions for every system, a warm-up
answer first, per answer p50/p95):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generator.py --speed [--questions 50] [--vllm] [key=value ...]

times the teacher and the distilled student both on transformers (fp32, batch 1), the student's ONNX
exports (fp32, int8) on onnxruntime and, with ``--vllm``, the teacher and the student's export served
by vLLM's OpenAI server from ``.venv-vllm`` on this CPU (started here, one after the other). It prints
two ratios: teacher/student both on transformers, and each on its fastest runtime measured here.
Speed figures need an idle machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

TARGETS = {"token_f1": 0.9, "grounding": 0.9, "exact_match": 0.9, "answer_correct": 0.9}
SPEED_TARGET = 5.0  # teacher p50 / student p50 on the production runtimes
ROOT = Path(__file__).resolve().parent.parent


def quality(argv: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.logging import setup_logging
    from ragdistill.common.ops.verbs import run_verb
    from ragdistill.generator import stage

    cfg = compose("generator", ["run.report_to=[]", *argv])
    setup_logging(cfg.run.log_level)
    apply_run_settings(cfg)
    result = run_verb(stage, "evaluate", cfg)
    res, t, b = result.results, result.results["teacher"], result.results["student_base"]
    print(f"\n[bench generator] {result.n_items} held-out questions; system / teacher (target), undistilled student for reference")
    ok = True
    for name in [s for s in res if s not in ("teacher", "student_base")]:
        s = res[name]
        for m, target in TARGETS.items():
            if not t.get(m):
                continue
            ratio = s[m] / t[m]
            ok &= ratio >= target if name == "student" else True
            print(f"  {name:<18} {m:<14} {s[m]:.4f} / teacher {t[m]:.4f} = {ratio:.2f} (target >= {target:.2f}: "
                  f"{'met' if ratio >= target else 'NOT met'}); student_base {b[m] / t[m]:.2f}, gain {s[m] - b[m]:+.4f}")
    print(f"[bench generator] distilled student meets every quality target: {ok}")
    return 0


def _timed(generate: Any, convs: list[Any]) -> dict[str, float]:
    """Per-answer seconds, one question at a time after one warm-up answer, and the mean answer length in
    words: answers of a few words are prefill-bound, so a ratio is only fair where the lengths are alike."""
    import numpy as np

    generate(convs[:1])
    lat, words = [], []
    for c in convs:
        t0 = time.perf_counter()
        answer = generate([c])[0]
        lat.append(time.perf_counter() - t0)
        words.append(len(answer.split()))
    return {"p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)), "n": len(lat),
            "words": float(np.mean(words))}


def _serve(model: str, name: str, port: int, log: Path) -> subprocess.Popen:
    """vLLM's OpenAI server from .venv-vllm on this CPU (fp32, eager), ready to answer."""
    import httpx

    py = ROOT / ".venv-vllm/bin/python"
    cmd = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", name, "--host", "127.0.0.1",
           "--port", str(port), "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager", "--generation-config", "auto"]
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", **os.environ}
    if (os.cpu_count() or 1) <= 4:  # vLLM keeps a core for its scheduler: on 2 cores it would compute on one (1.7x slower here)
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vLLM server for {model} exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(2)
    proc.kill()
    raise SystemExit(f"vLLM server for {model} not up after 600 s; see {log}")


def speed(argv: list[str]) -> int:
    import argparse

    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.models import resolve_model
    from ragdistill.common.teachers.openai_http import OpenAIChatTeacher
    from ragdistill.generator import stage
    from ragdistill.generator.teachers import answer_teacher, teacher_max_new_tokens
    from ragdistill.generator.variants import generator

    p = argparse.ArgumentParser(prog="bench/generator.py --speed")
    p.add_argument("--questions", type=int, default=50)
    p.add_argument("--vllm", action="store_true", help="also time teacher and student served by vLLM from .venv-vllm")
    opts, overrides = p.parse_known_args(argv)
    cfg = compose("generator", ["run.report_to=[]", *overrides])
    apply_run_settings(cfg)
    convs = [stage.conversation(cfg, r) for r in stage.held_out(cfg, opts.questions)]
    t_max, s_max = teacher_max_new_tokens(cfg), int(cfg.generator.student_max_new_tokens)
    rows: dict[str, dict[str, float]] = {}
    teacher = answer_teacher(cfg)
    rows["teacher transformers"] = _timed(lambda c: teacher.generate(c, max_new_tokens=t_max), convs)
    teacher.close()
    for variant, label in (("student", "student transformers"), ("student_onnx", "student onnx fp32"), ("student_onnx_int8", "student onnx int8")):
        gen = generator(cfg, variant, 1)
        rows[label] = _timed(gen.generate, convs)
        del gen
    if opts.vllm:
        work = Path(str(cfg.paths.work_dir))
        for label, model, mnt in (("teacher vllm", resolve_model(cfg.teacher.model), t_max),
                                  ("student vllm", str(work / "generator/export/model"), s_max)):
            proc = _serve(model, "bench", 8123, work / f"bench-{label.replace(' ', '-')}.log")
            try:
                client = OpenAIChatTeacher("bench", "http://127.0.0.1:8123/v1", max_new_tokens=mnt, max_in_flight=1)
                rows[label] = _timed(client.generate, convs)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    print(f"\n[bench generator --speed] {len(convs)} held-out questions, one at a time; seconds per answer")
    print("| system | p50 s | p95 s | answer words |\n|---|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['p50_s']:.3f} | {v['p95_s']:.3f} | {v['words']:.1f} |")
    tt, st = rows["teacher transformers"], rows["student transformers"]
    print(f"ratio teacher/student, both on transformers: p50 {tt['p50_s'] / st['p50_s']:.1f}x, p95 {tt['p95_s'] / st['p95_s']:.1f}x")
    best_t = min((k for k in rows if k.startswith("teacher")), key=lambda k: rows[k]["p50_s"])
    best_s = min((k for k in rows if k.startswith("student")), key=lambda k: rows[k]["p50_s"])
    r = rows[best_t]["p50_s"] / rows[best_s]["p50_s"]
    print(f"ratio on the best runtimes ({best_t} / {best_s}): p50 {r:.1f}x (target >= {SPEED_TARGET:.0f}x: "
          f"{'met' if r >= SPEED_TARGET else 'NOT met'}), p95 {rows[best_t]['p95_s'] / rows[best_s]['p95_s']:.1f}x")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    args = sys.argv[1:]
    sys.exit(run_script(speed, [a for a in args if a != "--speed"]) if "--speed" in args else run_script(quality, args))

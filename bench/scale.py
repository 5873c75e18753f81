"""Scale-out evidence, measured side by side in one run on this machine.

1. Ray Data labelling: the same N SciFact passages embedded by the teacher with 1 and with 2 Ray
   workers (fresh caches; worker start-up, i.e. loading the teacher, included), next to labelling
   in this process (``run.launcher=local``).
2. The fleet client against a real local OpenAI-compatible server (``ragdistill serve-openai``,
   SmolLM2-135M, micro-batching): the same requests with 1 and with 4 in flight.
3. Per-item teacher cost on this CPU (the inputs of the 1M-passage plan in docs/scale.md): passage
   embedding (mpnet), (query, passage) scoring (a cross-encoder of the same size, mpnet-base), and
   LLM generation (the local server; ``--qwen`` also times the packaged 0.5B teacher in process).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py                   # a few minutes on idle cores
    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py --n 512 --qwen --out work/bench/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _passages(n: int) -> list[str]:
    from ragdistill.common.data import load_retrieval

    docs = list(load_retrieval("scifact").corpus.values())
    return [d.full_text for d in (docs * (n // len(docs) + 1))[:n]]


def bench_ray(texts: list[str], teacher_cfg: dict, workers: list[int], batch_size: int) -> dict:
    from ragdistill.common.cache import LabelCache
    from ragdistill.common.labelling import LaunchSettings, ensure_ray, run_labelling
    from ragdistill.common.teachers import build_teacher

    out: dict = {"n": len(texts)}
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    t0 = time.perf_counter()
    teacher = build_teacher(teacher_cfg)
    load_s = time.perf_counter() - t0
    run = run_labelling(LabelCache(tmp / "local.sqlite"), teacher_cfg, "embed", texts, "local", teacher=teacher, batch_size=batch_size)
    out["local"] = {"items_per_s": run.items_per_s, "seconds": run.seconds, "teacher_load_s": load_s}
    print(f"[ray] local, this process: {run.labelled} items in {run.seconds:.1f}s = {run.items_per_s:.1f} items/s (+{load_s:.1f}s teacher load)", flush=True)
    ensure_ray(LaunchSettings("ray", local_num_cpus=os.cpu_count()))
    for w in workers:
        launch = LaunchSettings("ray", num_workers=w, batch_size=batch_size)
        run = run_labelling(LabelCache(tmp / f"ray{w}.sqlite"), teacher_cfg, "embed", texts, launch, teacher_id=teacher.teacher_id)
        out[f"ray_{w}"] = {"items_per_s": run.items_per_s, "seconds": run.seconds}
        print(f"[ray] {w} worker(s): {run.labelled} items in {run.seconds:.1f}s = {run.items_per_s:.1f} items/s (worker start-up included)", flush=True)
    if len(workers) > 1:
        a, b = workers[0], workers[-1]
        out["speedup"] = out[f"ray_{b}"]["items_per_s"] / out[f"ray_{a}"]["items_per_s"]
        print(f"[ray] speed-up {b} vs {a} workers: {out['speedup']:.2f}x", flush=True)
    import ray

    ray.shutdown()
    return out


def _start_server(model: str, threads: int, max_batch: int) -> tuple[subprocess.Popen, str, float]:
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "ragdistill.common.ops.serve_openai", "--model", model, "--port", "0",
                          "--threads", str(threads), "--max-batch", str(max_batch)],
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = p.stdout.readline()
    if "listening on" not in line:
        raise SystemExit(f"server did not start: {line!r}")
    return p, line.rsplit(" ", 1)[1].strip(), time.perf_counter() - t0


def _cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _timed(fn, items, batch_size: int) -> dict:
    """Wall and CPU time per item (CPU time does not grow when other jobs share the cores)."""
    from ragdistill.common.timing import measure

    c0 = time.process_time()
    st = measure(fn, items, batch_size=batch_size, warmup=0)
    cpu = time.process_time() - c0
    return {"items_per_s": st.items_per_s, "ms_per_item": 1000 / st.items_per_s, "cpu_ms_per_item": 1000 * cpu / len(items)}


def bench_fleet(model: str, n: int, max_new_tokens: int, in_flight: list[int], threads: int) -> dict:
    from ragdistill.common.teachers import build_teacher

    proc, url, start_s = _start_server(model, threads, max_batch=max(in_flight))
    out: dict = {"n": n, "max_new_tokens": max_new_tokens, "server_start_s": start_s, "model": model}
    try:
        for k in in_flight:
            t = build_teacher({"backend": "openai", "model": model, "base_url": url, "max_in_flight": k, "max_new_tokens": max_new_tokens})
            convs = [[{"role": "user", "content": f"In one sentence, what is claim {k}-{i} about vitamin D?"}] for i in range(n)]
            t.generate(convs[:2])  # warm-up
            cpu0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            answers = t.generate(convs)
            s = time.perf_counter() - t0
            cpu = _cpu_seconds(proc.pid) - cpu0
            assert len(answers) == n and all(answers)
            out[f"in_flight_{k}"] = {"items_per_s": n / s, "seconds": s, "s_per_item": s / n, "server_cpu_s_per_item": cpu / n}
            print(f"[fleet] {k} in flight: {n} requests in {s:.1f}s = {n / s:.2f} items/s; server CPU {cpu / n:.2f} s/request", flush=True)
        if len(in_flight) > 1:
            a, b = in_flight[0], in_flight[-1]
            out["speedup"] = out[f"in_flight_{b}"]["items_per_s"] / out[f"in_flight_{a}"]["items_per_s"]
            out["cpu_efficiency"] = out[f"in_flight_{a}"]["server_cpu_s_per_item"] / out[f"in_flight_{b}"]["server_cpu_s_per_item"]
            print(f"[fleet] speed-up {b} vs {a} in flight: {out['speedup']:.2f}x wall, {out['cpu_efficiency']:.2f}x less server CPU per request", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    return out


def bench_costs(texts: list[str], qwen: bool, threads: int) -> dict:
    """Per-item teacher cost in this process (``threads`` torch threads)."""
    import torch

    from ragdistill.common.models import resolve_model
    from ragdistill.common.teachers.local import CrossEncoderTeacher, HFCausalLMTeacher, SentenceTransformerTeacher
    torch.set_num_threads(threads)
    out: dict = {"threads": threads}
    emb = SentenceTransformerTeacher("mpnet", batch_size=32, max_length=256)
    emb.embed(texts[:8])  # warm-up
    out["embed_mpnet_len256"] = r = _timed(emb.embed, texts, 32)
    print(f"[cost] mpnet embedding (<=256 tokens): {r['ms_per_item']:.1f} ms/passage wall, {r['cpu_ms_per_item']:.1f} CPU-ms", flush=True)
    # a cross-encoder of the reranker teacher's size (mpnet-base); the timing does not depend on the weights
    ce = CrossEncoderTeacher(resolve_model("mpnet"), batch_size=32, max_length=256)
    pairs = [("what does vitamin D do to the immune system?", t) for t in texts]
    ce.score(pairs[:8])
    out["score_ce_mpnet_len256"] = r = _timed(ce.score, pairs, 32)
    print(f"[cost] mpnet-base cross-encoder (<=256 tokens): {r['ms_per_item']:.1f} ms/pair wall, {r['cpu_ms_per_item']:.1f} CPU-ms", flush=True)
    if qwen:
        t0 = time.perf_counter()
        lm = HFCausalLMTeacher("qwen2.5-0.5b-instruct", max_new_tokens=32, batch_size=4)
        load = time.perf_counter() - t0
        convs = [[{"role": "user", "content": f"Context: {t[:600]}\n\nQuestion: what is the main finding? Answer briefly."}] for t in texts[:4]]
        t0, c0 = time.perf_counter(), time.process_time()
        answers = lm.generate(convs, max_new_tokens=32)
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
        new_tokens = sum(len(lm.tokenizer(a).input_ids) for a in answers)
        out["generate_qwen0.5b"] = {"s_per_item": s / len(convs), "cpu_s_per_item": cpu / len(convs), "tokens_per_s": new_tokens / s,
                                    "new_tokens": new_tokens, "load_s": load,
                                    "prompt_tokens_avg": sum(len(lm.tokenizer(lm._prompt(c)).input_ids) for c in convs) / len(convs)}
        print(f"[cost] qwen2.5-0.5b generation (batch 4, <=32 new tokens): {s / len(convs):.1f} s/item wall, {cpu / len(convs):.1f} CPU-s/item", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="passages labelled per Ray run")
    p.add_argument("--teacher", default="mpnet", help="embedding teacher for the Ray runs")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--requests", type=int, default=24, help="requests per fleet run")
    p.add_argument("--in-flight", default="1,4")
    p.add_argument("--llm", default="smollm2-135m-instruct", help="model behind the local OpenAI-compatible server")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--qwen", action="store_true", help="also time the packaged 0.5B LLM teacher in process (~2 min)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: ray,fleet,cost")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    threads = os.cpu_count() or 1
    res: dict = {"machine": {"cpus": threads, "load_avg_at_start": os.getloadavg()}}
    print(f"machine: {threads} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    texts = _passages(a.n)
    if "ray" not in skip:
        cfg = {"backend": "sentence_transformer", "model": a.teacher, "batch_size": 16, "max_length": a.max_length}
        res["ray"] = bench_ray(texts, cfg, [int(x) for x in a.workers.split(",")], batch_size=16)
    if "fleet" not in skip:
        res["fleet"] = bench_fleet(a.llm, a.requests, a.max_new_tokens, [int(x) for x in a.in_flight.split(",")], threads)
    if "cost" not in skip:
        res["cost"] = bench_costs(texts[:64], a.qwen, threads)
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    print("\n" + json.dumps(res, indent=2))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    run_script(main)

"""The embedder teacher's labelling speed: torch vs its fp32 ONNX export, through the same label cache.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedder_labelling.py [--docs N] [key=value ...]

Labels the first ``N`` (default 256) SciFact documents with the stage's cached teacher
(``EmbedderStage.teacher``: the path ``teach`` takes, committed to a label cache batch by batch),
once with ``teacher.onnx=false`` and once with ``teacher.onnx=true``, each into a fresh cache (every
document a miss), and prints documents/s of each, the ratio, and the parity of the two label sets
(cosine per document: the ONNX teacher keeps torch's cache key, so it must embed alike). Loading the
model (and the one-time ONNX export into the model cache) is not timed. Needs an idle machine:
the two runs are timed one after the other in this process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def main(argv: list[str]) -> int:
    import numpy as np

    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.logging import setup_logging
    from ragdistill.embedder import stage
    from ragdistill.embedder.data import load_data
    from ragdistill.embedder.teacher import TEMPLATE

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=256)
    args, overrides = p.parse_known_args(argv)
    labels: dict[str, np.ndarray] = {}
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, onnx in (("torch", "false"), ("onnx_fp32", "true")):
            cfg = compose("embedder", ["run.report_to=[]", f"paths.work_dir={tmp}/{name}", "embedder.teach.shipped_labels=[]",
                                       f"teacher.onnx={onnx}", *overrides])
            setup_logging("WARNING")
            apply_run_settings(cfg)
            data = load_data(cfg)
            texts = [d.full_text for d in list(data.corpus.values())[: args.docs]]
            with stage.teacher(cfg) as teacher:
                teacher.embed(texts[:2])  # load (and export once) outside the timing
                t0 = time.perf_counter()
                run = teacher.label(texts, TEMPLATE, desc=f"{name} labelling")
                seconds = time.perf_counter() - t0
                assert run.labelled == len(texts), "the fresh cache should miss every document"
                labels[name], rates[name] = np.stack(run.labels), len(texts) / seconds
                teacher_id, threads = teacher.teacher_id, __import__("torch").get_num_threads()
            print(f"[bench embedder labelling] {name:<10} {len(texts)} docs in {seconds:.1f} s = {rates[name]:.2f} docs/s "
                  f"({teacher_id}, torch threads {threads})", flush=True)
    a, b = labels["torch"], labels["onnx_fp32"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"[bench embedder labelling] ONNX fp32 / torch: {rates['onnx_fp32'] / rates['torch']:.2f}x docs/s; "
          f"parity cosine mean {cos.mean():.6f}, min {cos.min():.6f} on {len(cos)} documents")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))

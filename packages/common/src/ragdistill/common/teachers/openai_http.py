"""A teacher behind OpenAI-compatible chat endpoints: ``vllm serve`` replicas or a hosted API.

``base_url`` is one URL or a fleet (a list, or URLs joined by commas): requests are spread over
the healthy endpoints with at most ``max_in_flight`` open at once and an optional request-rate
limit; 429/5xx answers and timeouts are retried with backoff, and an endpoint that keeps failing
is taken out of rotation for a cool-down (see :mod:`ragdistill.common.teachers.fleet`). The key is
read from an environment variable (never from config, never logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers.base import Messages
from ragdistill.common.teachers.fleet import RETRY_STATUS, FleetClient, FleetSettings, parse_base_urls

__all__ = ["RETRY_STATUS", "OpenAIChatTeacher"]


class OpenAIChatTeacher:
    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_new_tokens: int = 128,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 1.0,
        max_in_flight: int = 8,
        rate_limit: float | None = None,
        fail_threshold: int = 3,
        cooldown: float = 30.0,
    ) -> None:
        self.model = model
        self.base_urls = parse_base_urls(base_url)
        self.base_url = self.base_urls[0] if self.base_urls else ""
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.fleet = FleetClient(self.base_urls, api_key_env, FleetSettings(
            max_in_flight=max_in_flight, rate_limit=rate_limit, max_retries=max_retries, timeout=timeout,
            backoff=backoff, fail_threshold=fail_threshold, cooldown=cooldown,
        ))
        # the endpoints do not change the labels: the same model behind any URL gives the same cache keys
        self.teacher_id = f"openai:{model}:T={temperature}:max={max_new_tokens}"

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChatTeacher(model={self.model!r}, base_url={self.base_urls!r})"

    # retry settings stay adjustable on the teacher, as before the fleet client
    @property
    def backoff(self) -> float:
        return self.fleet.settings.backoff

    @backoff.setter
    def backoff(self, value: float) -> None:
        self.fleet.settings.backoff = value

    @property
    def max_retries(self) -> int:
        return self.fleet.settings.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self.fleet.settings.max_retries = value

    @property
    def timeout(self) -> float:
        return self.fleet.settings.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self.fleet.settings.timeout = value

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        payloads = [{
            "model": self.model,
            "messages": messages,
            "temperature": overrides.get("temperature", self.temperature),
            "max_tokens": overrides.get("max_new_tokens", self.max_new_tokens),
        } for messages in conversations]
        out = []
        for resp in self.fleet.post_many_sync("/chat/completions", payloads):
            try:
                content = resp["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise RagdistillError(f"teacher endpoint(s) {self.base_urls} returned no choices: {str(resp)[:300]}") from None
            if not isinstance(content, str):  # null (a refusal, a tool call) or a non-string: not a label, never cached as ""
                raise RagdistillError(f"teacher endpoint(s) {self.base_urls}, model {self.model!r}: a reply whose message content is "
                                      f"not text ({type(content).__name__}: {str(content)[:100]!r}); labels of earlier batches are "
                                      "kept in the label cache. Check that the server runs a chat model with a chat template "
                                      "(vLLM: --chat-template), then rerun: labelling resumes from the cache")
            out.append(content.strip())
        return out

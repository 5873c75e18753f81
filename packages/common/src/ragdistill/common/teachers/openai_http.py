"""A teacher behind any OpenAI-compatible chat endpoint: a ``vllm serve`` server or a hosted API.

The key is read from an environment variable (never from config, never logged); 429 and 5xx
answers and timeouts are retried with exponential backoff (honouring ``Retry-After``).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import requests

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.teachers.base import Messages

log = get_logger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIChatTeacher:
    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_new_tokens: int = 128,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 1.0,
    ) -> None:
        self.model, self.base_url = model, base_url.rstrip("/")
        self._api_key = os.environ.get(api_key_env, "")
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.max_retries, self.timeout, self.backoff = max_retries, timeout, backoff
        self.teacher_id = f"openai:{model}:T={temperature}:max={max_new_tokens}"
        self._session = requests.Session()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChatTeacher(model={self.model!r}, base_url={self.base_url!r})"

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            try:
                r = self._session.post(url, json=payload, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                err: str = f"{type(e).__name__}"
                wait = self.backoff * 2**attempt
            else:
                if r.status_code == 200:
                    return r.json()
                if r.status_code not in RETRY_STATUS:
                    raise RagdistillError(f"teacher endpoint {url} answered {r.status_code}: {r.text[:300]}")
                err = f"HTTP {r.status_code}"
                wait = float(r.headers.get("Retry-After") or self.backoff * 2**attempt)
            if attempt == self.max_retries:
                raise RagdistillError(f"teacher endpoint {url} failed after {attempt + 1} tries (last: {err})")
            wait *= 1 + 0.1 * random.random()
            log.warning("teacher endpoint %s: %s, retry %d in %.1fs", url, err, attempt + 1, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        out = []
        for messages in conversations:
            resp = self._post({
                "model": self.model,
                "messages": messages,
                "temperature": overrides.get("temperature", self.temperature),
                "max_tokens": overrides.get("max_new_tokens", self.max_new_tokens),
            })
            try:
                out.append(str(resp["choices"][0]["message"]["content"] or "").strip())
            except (KeyError, IndexError, TypeError):
                raise RagdistillError(f"teacher endpoint {self.base_url} returned no choices: {str(resp)[:300]}") from None
        return out

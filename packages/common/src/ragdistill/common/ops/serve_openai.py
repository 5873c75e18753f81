"""A small OpenAI-compatible chat server over a local Hugging Face causal LM.

Not a production server (that is ``vllm serve`` on a GPU): it exists so the fleet client, the
benchmarks and the tests talk to a real HTTP endpoint running a real model on this machine, and so
a student can be served the same way its teacher is. Requests that arrive together are decoded
together (micro-batching, the way vLLM batches concurrent requests), so concurrency from the
client pays off here too. ``--max-queue`` answers 429 with ``Retry-After`` when too many requests
wait, like a hosted API under load; ``--api-key-env`` makes it demand ``Authorization: Bearer``.

    ragdistill serve-openai --model smollm2-135m-instruct --port 8000
    python -m ragdistill.common.ops.serve_openai --model smollm2-135m-instruct --port 0   # any free port
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ragdistill.common.logging import get_logger

log = get_logger(__name__)


class MicroBatcher:
    """One decoding thread; concurrent requests with the same sampling settings share a batch."""

    def __init__(self, model: str, max_batch: int = 8, batch_wait_ms: float = 5.0, max_new_tokens_cap: int = 512) -> None:
        from ragdistill.common.teachers.local import HFCausalLMTeacher

        self.lm = HFCausalLMTeacher(model, batch_size=max_batch)
        self.model_name, self.max_batch, self.wait = model, max_batch, batch_wait_ms / 1000
        self.cap = max_new_tokens_cap
        self.queue: queue.Queue[tuple[list[dict[str, str]], int, float, Future]] = queue.Queue()
        self.served = 0
        threading.Thread(target=self._loop, daemon=True, name="decode").start()

    def submit(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> Future:
        fut: Future = Future()
        self.queue.put((messages, min(max_tokens, self.cap), temperature, fut))
        return fut

    def _loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups: dict[tuple[int, float], list[Any]] = {}
            for item in batch:
                groups.setdefault((item[1], item[2]), []).append(item)
            for (max_tokens, temperature), items in groups.items():
                try:
                    texts = self.lm.generate([m for m, *_ in items], max_new_tokens=max_tokens, temperature=temperature)
                except Exception as e:  # answered as a 500, the server keeps running
                    for *_, fut in items:
                        fut.set_exception(e)
                    continue
                self.served += len(items)
                for (*_, fut), text in zip(items, texts, strict=True):
                    fut.set_result(text)


def make_handler(engine: MicroBatcher, api_key: str, max_queue: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections

        def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) and will retry
                log.debug("client %s went away before the answer", self.address_string())
                self.close_connection = True

        def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(code, {"error": {"message": message, "type": "invalid_request_error" if code < 500 else "server_error"}}, headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok", "served": engine.served, "queued": engine.queue.qsize()})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": engine.model_name, "object": "model", "owned_by": "ragdistill"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(404, f"no route {self.path}; this server answers POST /v1/chat/completions")
            if api_key and self.headers.get("Authorization", "") != f"Bearer {api_key}":
                return self._error(401, "missing or wrong API key")
            try:
                body = json.loads(raw)
                messages = body["messages"]
                if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
                    raise ValueError("messages must be a list of {role, content}")
            except (ValueError, KeyError, TypeError) as e:
                return self._error(400, f"bad request body: {e}")
            if max_queue and engine.queue.qsize() >= max_queue:
                return self._error(429, "too many requests queued; retry later", {"Retry-After": "1"})
            fut = engine.submit(messages, int(body.get("max_tokens") or 128), float(body.get("temperature") or 0.0))
            try:
                text = fut.result()
            except Exception as e:
                return self._error(500, f"generation failed: {type(e).__name__}: {e}")
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": engine.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            })

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s " + fmt, self.address_string(), *args)

    return Handler


def build_server(model: str, host: str = "127.0.0.1", port: int = 0, max_batch: int = 8, batch_wait_ms: float = 5.0,
                 max_queue: int = 0, api_key_env: str | None = None) -> ThreadingHTTPServer:
    """Load the model and bind; ``serve_forever()`` the result (``server.server_port`` is the port)."""
    engine = MicroBatcher(model, max_batch=max_batch, batch_wait_ms=batch_wait_ms)
    api_key = os.environ.get(api_key_env, "") if api_key_env else ""
    server = ThreadingHTTPServer((host, port), make_handler(engine, api_key, max_queue))
    server.daemon_threads = True
    return server


def serve_command(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="ragdistill serve-openai", description=serve_command.description)
    p.add_argument("--model", default="smollm2-135m-instruct", help="packaged name, local folder or hub id of a causal LM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on start)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long the first request waits for company")
    p.add_argument("--max-queue", type=int, default=0, help="answer 429 when this many requests wait (0: never)")
    p.add_argument("--api-key-env", default=None, help="demand the key held in this environment variable")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    server = build_server(a.model, a.host, a.port, a.max_batch, a.batch_wait_ms, a.max_queue, a.api_key_env)
    print(f"ragdistill serve-openai: {a.model} listening on http://{a.host}:{server.server_port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


serve_command.description = "serve a local causal LM behind an OpenAI-compatible /v1/chat/completions (tests, benches, small fleets)"

if __name__ == "__main__":
    import sys

    from ragdistill.common.logging import offline_defaults

    offline_defaults()
    serve_command(sys.argv[1:])

"""The OpenAI-compatible teacher as a fleet client, against two real local servers (SmolLM2-135M)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from ragdistill.common.cache import LabelCache
from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers import build_teacher
from ragdistill.common.teachers.fleet import TokenBucket

KEY_ENV, KEY = "RAGDISTILL_FLEET_TEST_KEY", "sk-fleet-test-7f3a"


def _start(port: int = 0) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", KEY_ENV: KEY}
    p = subprocess.Popen(
        [sys.executable, "-m", "ragdistill.common.ops.serve_openai", "--model", "smollm2-135m-instruct", "--port", str(port),
         "--threads", "1", "--max-batch", "4", "--api-key-env", KEY_ENV],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True,
    )
    return p


def _wait_ready(p: subprocess.Popen) -> int:
    line = p.stdout.readline()  # printed once the model is loaded and the port bound
    assert "listening on" in line, f"server did not start: {line!r}"
    return int(line.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def servers():
    procs = [_start(), _start()]  # both load their model at the same time
    ports = [_wait_ready(p) for p in procs]
    yield procs, ports
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _teacher(urls, **kw):
    cfg = {"backend": "openai", "model": "smollm2-135m-instruct", "base_urls": urls, "api_key_env": KEY_ENV,
           "max_new_tokens": 3, "max_in_flight": 4, **kw}
    return build_teacher(cfg)


def _convs(n, tag):
    return [[{"role": "user", "content": f"{tag} {i}: name a colour."}] for i in range(n)]


def test_load_is_spread_over_both_servers_and_the_key_stays_secret(servers, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    _, ports = servers
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    t = _teacher(urls)
    caplog.set_level(logging.DEBUG)
    out = t.generate(_convs(12, "spread"))
    assert len(out) == 12 and all(isinstance(x, str) and x for x in out)
    stats = t.fleet.stats
    assert sum(s["ok"] for s in stats.values()) == 12
    assert all(s["ok"] >= 3 for s in stats.values()), stats  # both endpoints carried a real share
    assert KEY not in repr(t) and KEY not in repr(t.fleet) and KEY not in caplog.text
    monkeypatch.setenv(KEY_ENV, "sk-wrong")  # the server checks the header: the key really travels
    with pytest.raises(RagdistillError, match="answered 401") as e:
        t.generate(_convs(1, "auth"))
    assert "sk-wrong" not in str(e.value)


def test_a_dead_endpoint_is_taken_out_of_rotation(servers, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    _, ports = servers
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    t = _teacher([f"http://127.0.0.1:{dead}/v1", f"http://127.0.0.1:{ports[1]}/v1"], fail_threshold=1, cooldown_s=600)
    out = t.generate(_convs(10, "dead"))
    assert len(out) == 10 and all(out)
    st = t.fleet.stats
    d, live = st[f"http://127.0.0.1:{dead}/v1"], st[f"http://127.0.0.1:{ports[1]}/v1"]
    assert live["ok"] == 10 and d["ok"] == 0
    assert d["taken_out"] == 1 and not d["in_rotation"]
    assert 1 <= d["failed"] <= 4  # only the requests sent before it was known dead (max_in_flight=4)


def test_token_bucket_caps_the_request_rate(servers, monkeypatch):
    async def burst(n):
        b = TokenBucket(rate=20, burst=1)
        t0 = time.monotonic()
        for _ in range(n):
            await b.acquire()
        return time.monotonic() - t0

    assert 0.45 <= asyncio.run(burst(11)) < 2.0  # 10 waits of 1/20 s after the first token
    monkeypatch.setenv(KEY_ENV, KEY)
    t = _teacher([f"http://127.0.0.1:{servers[1][0]}/v1"], rate_limit=10.0)
    t0 = time.monotonic()
    assert len(t.generate(_convs(6, "rate"))) == 6
    assert time.monotonic() - t0 >= 0.5  # 6 requests at 10/s cannot finish sooner
    with pytest.raises(RagdistillError, match="rate_limit=0"):
        TokenBucket(0)


def test_labelling_survives_a_server_stopped_mid_run_and_it_comes_back(servers, monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, KEY)
    procs, ports = servers
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    t = _teacher(urls, fail_threshold=2, cooldown_s=3.0, max_retries=4)
    t.backoff = 0.05
    convs = _convs(32, "survive")
    result: dict = {}

    def label():  # the labelling run, in its own thread (SQLite connections stay in the thread that made them)
        result["out"] = LabelCache(tmp_path / "labels.sqlite").label(convs, t.generate, t.teacher_id, batch_size=8)

    run = threading.Thread(target=label)
    run.start()
    deadline = time.time() + 180
    while t.fleet.stats[urls[0]]["ok"] < 4 and time.time() < deadline and run.is_alive():
        time.sleep(0.02)
    assert t.fleet.stats[urls[0]]["ok"] >= 4, "server A never answered"
    os.killpg(procs[0].pid, signal.SIGKILL)  # stop server A mid-run
    procs[0].wait()
    run.join(timeout=300)
    assert not run.is_alive()
    out = result["out"]
    assert len(out) == 32 and all(isinstance(x, str) and x for x in out)  # no item lost
    assert len(LabelCache(tmp_path / "labels.sqlite")) == 32
    st = t.fleet.stats
    # taken out once it failed twice in a row; every cool-down after that it was probed, failed and taken out again
    assert st[urls[0]]["failed"] >= 2 and st[urls[0]]["taken_out"] >= 1
    assert st[urls[1]]["ok"] > st[urls[0]]["ok"] >= 4
    assert st[urls[0]]["ok"] + st[urls[1]]["ok"] == 32

    # restart A on its port: after the cool-down it is tried again and, answering, put back in rotation
    procs[0] = _start(ports[0])
    assert _wait_ready(procs[0]) == ports[0]
    while t.fleet.stats[urls[0]]["in_rotation"] is False:
        time.sleep(0.1)
    before = t.fleet.stats[urls[0]]["ok"]
    assert len(t.generate(_convs(8, "back"))) == 8
    assert t.fleet.stats[urls[0]]["ok"] > before and t.fleet.stats[urls[0]]["in_rotation"]

"""Labelling on Ray Data: the teacher-actor pool, and the commit loop the vLLM processor shares.

The driver makes the keys, reads the cache and commits every finished batch in one transaction;
workers build the teacher once and return labels encoded as the cache stores them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from ragdistill.common.cache import LabelCache, _decode, _encode, label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.labelling import LabelRun, LaunchSettings, Prepare, _call, _capability
from ragdistill.common.logging import get_logger
from ragdistill.common.teachers import build_teacher, require

log = get_logger(__name__)

# ---- Ray Data


class TeacherWorker:
    """A Ray Data actor: builds the teacher once, then labels batches of ``{key, payload}`` rows.

    Returns each label encoded exactly as the cache stores it, plus the teacher id it was made
    with, so the driver can refuse labels from a worker whose teacher differs from the expected one."""

    def __init__(self, teacher_cfg: dict[str, Any], capability: str, prepare: Prepare | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        from ragdistill.common.logging import offline_defaults

        offline_defaults()
        self.teacher = require(build_teacher(teacher_cfg), _capability(capability), "ray labelling")
        self.compute = getattr(self.teacher, capability)
        self.prepare, self.overrides = prepare, overrides

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        inputs = [json.loads(p) for p in batch["payload"]]
        values = _call(self.compute, inputs, self.prepare, self.overrides)
        if len(values) != len(inputs):
            raise RagdistillError(f"teacher {self.teacher.teacher_id!r} returned {len(values)} labels for {len(inputs)} inputs")
        return {
            "key": np.asarray(batch["key"], dtype=object),
            "value": np.asarray([_encode(v) for v in values], dtype=object),
            "teacher_id": np.asarray([self.teacher.teacher_id] * len(values), dtype=object),
        }


def _probe_teacher_id(teacher_cfg: dict[str, Any]) -> str:
    return build_teacher(teacher_cfg).teacher_id


def ensure_ray(s: LaunchSettings) -> None:
    """Join ``s.address`` or start a local runtime once per process (a runtime already up is reused)."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RagdistillError(
            "run.launcher=ray needs Ray: pip install -c constraints.txt 'ragdistill-common[scale]' (ray[data]==2.60.0)"
        ) from e
    import logging

    ctx = ray.data.DataContext.get_current()  # our tqdm bar reports progress; Ray's own would repeat it every 10 s
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if s.address:
        ray.init(address=s.address, **kwargs)
    else:
        ray.init(num_cpus=s.local_num_cpus, **kwargs)


def _label_on_ray(cache: LabelCache, teacher_cfg: dict[str, Any], capability: str, inputs: Sequence[Any], s: LaunchSettings,
                  template: str, batch_size: int, desc: str, teacher_id: str | None, t0: float, key_id: str | None = None,
                  prepare: Prepare | None = None, overrides: dict[str, Any] | None = None) -> LabelRun:
    """Label the cache misses on Ray. The keys, the cache reads and the commits are made here, the same
    for both pipelines: the actor pool (:class:`TeacherWorker`, any teacher) and, for vLLM generation,
    Ray Data's LLM processor (:func:`_processor_batches`)."""
    resources = {"num_cpus": s.num_cpus_per_worker, "num_gpus": s.num_gpus_per_worker}
    # checked before any Ray runtime starts (the teacher-id probe below starts one): a contradictory
    # ray.llm_processor is a config error, not a Ray job
    from ragdistill.common.labelling.vllm import _llm_processor_available, _processor_batches, _vllm_id, _wants_llm_processor

    wants_processor = bool(inputs) and _wants_llm_processor(s, teacher_cfg, capability)
    if teacher_id is None and teacher_cfg.get("backend") == "vllm" and teacher_cfg.get("model"):
        teacher_id = _vllm_id(teacher_cfg)  # known without a probe: the id VLLMTeacher labels with
    if key_id is None and teacher_id is None:
        ensure_ray(s)
        import ray

        teacher_id = ray.get(ray.remote(**resources)(_probe_teacher_id).remote(teacher_cfg))
    kid = key_id or teacher_id
    assert kid is not None
    keys = [label_key(kid, template, x) for x in inputs]
    have = cache.get_many(keys)
    todo: dict[str, Any] = {}
    for k, x in zip(keys, inputs, strict=True):
        if k not in have and k not in todo and (cache.shard is None or cache.shard.owns(k)):
            todo[k] = x
    cached = len(set(have))
    processor = wants_processor and bool(todo) and _llm_processor_available(s)  # a cached run imports and probes nothing
    how = "Ray Data's vLLM LLM processor" if processor else "Ray"
    log.info("%s: %d inputs, %d cached, %d to label on %s (%d workers) -> %s", desc, len(inputs), cached, len(todo), how, s.num_workers,
             cache.path)
    labelled = 0
    if todo:  # a fully cached run starts no Ray runtime and loads no teacher
        ensure_ray(s)
        import ray.data

        rows = [{"key": k, "payload": json.dumps(x, ensure_ascii=False)} for k, x in todo.items()]
        # one block per batch: a finished batch streams back (and is committed) as soon as it is done,
        # rather than when a larger block completes
        ds = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // batch_size))
        if processor:
            batches = _processor_batches(ds, teacher_cfg, s, batch_size, teacher_id or kid, prepare, overrides)
        else:
            batches = ds.map_batches(
                TeacherWorker,
                fn_constructor_kwargs={"teacher_cfg": teacher_cfg, "capability": capability, "prepare": prepare, "overrides": overrides},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=s.num_workers),
                **resources,
            ).iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
        labelled = _commit_batches(cache, batches, todo, have, kid, teacher_id, desc)
    return LabelRun([have.get(k) for k in keys], len(inputs), cached, labelled, time.perf_counter() - t0, "ray", kid)


def _commit_batches(cache: LabelCache, batches: Iterator[dict[str, Any]], todo: dict[str, Any], have: dict[str, Any], kid: str,
                    expect: str | None, desc: str) -> int:
    """Commit each finished batch (``key``, ``value`` encoded as the cache stores it, ``teacher_id``)
    in one transaction as it streams back; returns how many labels were committed. ``expect`` None
    (a stage's ``key_id``): the first batch's teacher pins it for the others."""
    labelled = 0
    with tqdm(total=len(todo), desc=desc, unit="item") as bar:
        for batch in batches:
            ids = set(batch["teacher_id"].tolist())
            if expect is None and len(ids) == 1:
                expect = next(iter(ids))
            if ids != {expect}:
                raise RagdistillError(
                    f"a Ray worker labelled with teacher {sorted(ids)} but this run expects {expect!r}: the workers "
                    "see another model or settings; install the same model on every node"
                )
            got = {str(k): _decode(bytes(v)) for k, v in zip(batch["key"], batch["value"], strict=True)}
            unknown = set(got) - set(todo)
            if unknown:
                raise RagdistillError(f"Ray labelling returned {len(unknown)} keys that were not asked for")
            cache.put_many(got, kid)  # one transaction per finished batch
            have.update(got)
            labelled += len(got)
            bar.update(len(got))
    return labelled

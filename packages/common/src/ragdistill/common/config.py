"""Structured configs shared by every stage, registered with Hydra's ConfigStore.

Every stage's primary config (``conf/<stage>.yaml``) starts from a schema built on
:class:`StageConfig`, so an override with a typo (``teacher.modle=...``) or a wrong type is an
error that names the key, and each group file (``conf/teacher/*.yaml``) is checked against its
dataclass. Paths are relative to the working directory unless absolute.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ragdistill.common.errors import RagdistillError


@dataclass
class DataConfig:
    """Which data a stage reads. ``name`` is a bundled dataset (scifact, squad, canard); ``path``,
    when set, replaces it with a local folder/file or a Hugging Face dataset id."""

    name: str = "scifact"
    path: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    max_queries: int | None = None  # per split; None = all
    max_docs: int | None = None  # corpus slice (relevant docs always kept); None = all
    extra: str | None = None  # extra training inputs, e.g. a failure queue
    mteb_task: str | None = None  # MTEB's own task for this data (e.g. SciFact): evaluations run its definition on the local copy


@dataclass
class TeacherConfig:
    """A teacher backend (see ragdistill.common.teachers)."""

    backend: str = "sentence_transformer"
    model: str = ""
    batch_size: int = 32
    max_length: int | None = None
    # backend=sentence_transformer: run the same weights as fp32 ONNX (onnxruntime; exported once into the
    # model cache). Parity with torch is tested (cosine >= 0.999), so the labels keep torch's key
    onnx: bool = False
    max_new_tokens: int = 128
    temperature: float = 0.0
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    tensor_parallel_size: int = 1
    # openai backend as a fleet (docs/scale.md): endpoints load-balanced by the client. When set, base_urls
    # replaces base_url (which may itself hold several URLs joined by commas)
    base_urls: list[str] = field(default_factory=list)
    max_in_flight: int = 8  # requests open at once over the fleet
    rate_limit: float | None = None  # requests/s over the fleet (token bucket); None = unlimited
    max_retries: int = 5  # per request, on 429/5xx/timeouts, with exponential backoff
    request_timeout: float = 120.0  # seconds
    fail_threshold: int = 3  # failures in a row that take an endpoint out of rotation
    cooldown_s: float = 30.0  # seconds out of rotation before it is tried again
    # backend=ensemble (ragdistill.common.teachers.ensemble): several teachers combined. Each member is a
    # teacher config (backend, model, batch_size, ...) plus a weight; combine is how embeddings are joined:
    # concat (any dimensions; the student needs a projection) or mean (same dimension)
    members: list[Any] = field(default_factory=list)
    combine: str = "concat"


@dataclass
class StudentConfig:
    """The model distilled into: a packaged name, a local folder or a hub id."""

    model: str = ""
    max_length: int | None = None


@dataclass
class PathsConfig:
    work_dir: str = "${oc.env:RAGDISTILL_WORK,work}"
    label_cache: str = "${paths.work_dir}/cache/labels.sqlite"


@dataclass
class RunConfig:
    seed: int = 42
    log_level: str = "INFO"
    report_to: list[str] = field(default_factory=lambda: ["wandb"])  # Trainer callbacks; wandb is offline by default
    torch_threads: int | None = None
    shard: str | None = None  # "i/n": label 1/n of the inputs into a shard cache
    launcher: str = "local"  # how teach labels: local (this process) | ray (Ray Data) | shards (job array, needs shard)
    # the overrides this config was composed with (filled in by the CLI and compose(); model cards
    # print them as the command that reproduces a run)
    overrides: list[str] = field(default_factory=list)


@dataclass
class RayConfig:
    """``run.launcher=ray``: where the Ray Data labelling pipeline runs (docs/scale.md)."""

    address: str | None = None  # None: start a local runtime; "auto" or ray://host:10001 joins a cluster
    num_workers: int = 2  # teacher replicas (Ray actors), each loads the teacher once
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0
    batch_size: int = 32  # inputs per map_batches call
    local_num_cpus: int | None = None  # CPUs of a local runtime; None = all of this machine
    # teacher.backend=vllm generation on Ray: Ray Data's LLM processor (ray.data.llm; continuous batching
    # across batches) or one vllm.LLM per actor. auto: the processor where ray.data.llm and vLLM are
    # there; true: the processor or an error; false: the actors
    llm_processor: str = "auto"
    python: str | None = None  # the Python of the vLLM workers (runtime_env py_executable), e.g. .venv-vllm/bin/python
    max_model_len: int | None = None  # vLLM engine context length; None = the model's
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # more vLLM engine args: '+ray.engine_kwargs={dtype: float32}'


@dataclass
class RoutingConfig:
    """Confidence routing (ragdistill.common.routing): the student answers; an input whose confidence
    ``signal`` is below a threshold goes to the teacher. ``calibrate`` picks the threshold on held-out
    data: the fewest teacher calls that reach ``min_retention`` of the teacher's quality within
    ``max_teacher_fraction`` of the inputs (null = no cap); with ``min_retention`` null, the best
    quality within the budget."""

    signal: str = ""  # "" = the stage's default; see ragdistill.common.signals.SIGNALS
    max_teacher_fraction: float | None = 0.1  # teacher-call budget, in (0, 1)
    min_retention: float | None = None  # quality target as a share of the teacher's, e.g. 0.98
    queue: bool = True  # append routed inputs and held-out disagreements to the stage's failure queue
    queue_disagreement: float = 0.5  # a held-out case is queued when student-teacher disagreement exceeds this


@dataclass
class MonitorConfig:
    """``ragdistill monitor``: the held-out baseline each stage's ``export`` measures (student vs teacher
    divergence) and ``monitor`` compares live inputs against."""

    baseline_inputs: int = 8  # held-out inputs (at most the stage's evaluate slice); 0 = export writes no baseline


@dataclass
class TeachConfig:
    """What every stage's ``<stage>.teach`` group holds (a stage's own teach config subclasses it)."""

    # label-cache exports imported into the label cache before labelling (globs, relative to the
    # project folder unless absolute; each file is read once): ``teach`` on shipped data is a cache read
    shipped_labels: list[str] = field(default_factory=list)
    export_labels_to: str | None = None  # export-labels target; None = data/labels/<stage>-<data.name>.jsonl.gz
    export_labels_float16: bool = True  # arrays (embeddings) as float16: a quarter of the size


@dataclass
class TrainConfig:
    """What every stage's ``<stage>.train`` group holds: ``args``, passed as is to the trainer
    library's arguments class (see ragdistill.common.training); the stage's own settings beside it."""

    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportConfig:
    """The one export rule of every stage (``<stage>.export``): each exported variant reaches its
    parity bar, else the export fails naming it. What parity measures is the stage's (cosine,
    Spearman, share of identical greedy outputs)."""

    min_parity: float = 0.99  # lossless variants (fp32 ONNX, the merged model)
    min_parity_quantized: float = 0.9  # int8 and other quantized variants
    # push the export with its model cards to this Hugging Face Hub repo (<user or org>/<name>); see ops/hub.py
    push_to_hub: str | None = None
    push_dry_run: bool = False  # only write export/push_plan.json (what would be uploaded); also without network
    push_private: bool = True  # a repo the push creates is private


@dataclass
class EvaluateConfig:
    """What every stage's ``<stage>.evaluate`` group holds."""

    batch_size: int = 32


@dataclass
class StageConfig:
    """What every stage's config has; a stage's schema subclasses it and adds its own group."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


def register_schema(name: str, node: type) -> None:
    """Register a stage's primary schema and the shared group schemas (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name=name, node=node)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="teacher", name="teacher_schema", node=TeacherConfig)
    cs.store(group="student", name="student_schema", node=StudentConfig)
    cs.store(group="routing", name="routing_schema", node=RoutingConfig)


def save_config(cfg: Any, out_dir: str | Path) -> Path:
    """``<out_dir>/config.yaml``: the resolved config a verb ran with, beside what it wrote."""
    from ragdistill.common.io import write_text_atomic

    return write_text_atomic(Path(out_dir) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _register_schema_of(config_name: str) -> None:
    """Register ``<config_name>_schema`` from the installed stage of that name, if it is not yet
    known: the stage package is found through its entry point (no stage module is imported here by name)."""
    import importlib.metadata as md

    name = f"{config_name}_schema"
    if ConfigStore.instance().repo.get(f"{name}.yaml") is not None:
        return
    for ep in md.entry_points(group="ragdistill.stages", name=config_name):
        obj = ep.load()
        schema = getattr(obj, "schema", None)
        if schema is not None:
            register_schema(name, schema)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def apply_run_settings(cfg: DictConfig) -> None:
    import torch

    seed_everything(cfg.run.seed)
    if cfg.run.torch_threads:
        torch.set_num_threads(int(cfg.run.torch_threads))
    os.environ.setdefault("WANDB_DIR", str(Path(cfg.paths.work_dir).resolve()))


def _open_mappings(node: Any) -> None:
    """Let free-form mappings (fields typed ``dict[...]``, not dataclasses) take new keys."""
    from omegaconf import DictConfig

    for key in list(node.keys()) if isinstance(node, DictConfig) else []:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if dataclasses.is_dataclass(child._metadata.object_type):
                _open_mappings(child)
            else:
                OmegaConf.set_struct(child, False)


def check_keys(config_name: str, cfg: DictConfig) -> None:
    """Refuse keys the schema does not have, also those added with Hydra's ``+`` (its own hint for a
    typo such as ``+embedder.learing_rate=1`` would make the typo a silently ignored key). Free-form
    mappings (``<stage>.train.args``, ``ray.engine_kwargs``) take any key."""
    import difflib

    from omegaconf.errors import ConfigKeyError

    repo = ConfigStore.instance().repo
    node = repo.get(f"{config_name}_schema.yaml")
    if node is None:
        return
    schema = OmegaConf.structured(node.node)
    OmegaConf.set_struct(schema, True)
    _open_mappings(schema)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # untyped: a forced key is seen
        OmegaConf.merge(schema, {k: v for k, v in plain.items() if k != "hydra"})  # type: ignore[union-attr]
    except ConfigKeyError as e:
        key = str(getattr(e, "full_key", "") or "")
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        try:
            options = list(OmegaConf.select(schema, parent) or {}) if parent else list(schema)
        except Exception:
            options = []
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], options, 1)
        hint = f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""
        raise RagdistillError(f"config {config_name!r}: {key or e} is not a setting{hint} (see `ragdistill {config_name} <verb> --help`)") from None


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep (``a=1,2``, ``range(...)``, ``choice(...)``) cut to its
    first value: one composition that checks every key and type before Hydra starts the jobs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(o.type.name, "")
            first = next(iter(o.sweep_string_iterator()), "")
            out.append(f"{prefix}{o.key_or_group}{'@' + o.package if o.package else ''}={first}")
        else:
            out.append(o.input_line)
    return out


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose a stage config outside the CLI (tests, notebooks), with the same checks."""
    from hydra import compose as h_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ragdistill.common.paths import conf_dir

    _register_schema_of(config_name)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = h_compose(config_name=config_name, overrides=list(overrides or []))
            OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        cause = f"\n{e.__cause__}" if e.__cause__ is not None else ""
        raise RagdistillError(f"config error in {config_name!r}: {e}{cause}") from e
    check_keys(config_name, cfg)
    if "overrides" in (cfg.get("run") or {}):
        cfg.run.overrides = user_overrides(overrides or [])
    return cfg


def user_overrides(overrides: list[str]) -> list[str]:
    """The overrides a user gave, without Hydra's own settings and this record itself."""
    return [str(o) for o in overrides if not str(o).lstrip("+~").startswith(("hydra.", "hydra/", "run.overrides"))]

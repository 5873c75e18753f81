"""What every verb returns and writes: one result contract for all stages.

Each verb of every stage returns one of these dataclasses and the stage base class writes it to
one file per verb (``<work_dir>/<stage>/<verb>/<file>``)::

    teach     -> teach.json      TeachResult      labels read / made, training examples kept
    train     -> train.json      TrainResult      the student folder, steps
    export    -> export.json     ExportResult     the export folder, each variant's parity (the gate)
    evaluate  -> results.json    EvaluateResult   teacher | student before | student after | exports

The counts (``n_items``, ``teacher_calls``, ``cached``, ``train_steps``, ``seconds``) are what
``ragdistill cost`` prices, so they have one name in every stage; what a stage reports beyond
them goes into ``details``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_json
from ragdistill.common.paths import stage_dir


@dataclass
class VerbResult:
    """The counts every verb reports; ``details`` holds the stage's own figures."""

    FILE: ClassVar[str] = ""
    VERB: ClassVar[str] = ""

    stage: str
    n_items: int = 0  # inputs processed (labelled, trained on, exported, evaluated)
    teacher_calls: int = 0  # labels the teacher made in this run (label-cache misses)
    cached: int = 0  # labels read from the label cache instead
    train_steps: int = 0
    input_tokens: int = 0  # teacher prompt tokens, where an API teacher reports them
    output_tokens: int = 0
    seconds: float = 0.0  # wall time, filled in by the stage base class
    finished: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # what made it: the resolved config, library versions, git commit (run_verb fills it; see provenance())
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return self.VERB

    def as_dict(self) -> dict[str, Any]:
        return {"verb": self.verb, **asdict(self)}

    def count_labels(self, run: Any) -> None:
        """Add a :class:`~ragdistill.common.labelling.LabelRun`'s counts (cached / labelled)."""
        self.cached += int(getattr(run, "cached", 0))
        self.teacher_calls += int(getattr(run, "labelled", 0))

    def path(self, cfg: Any) -> Path:
        return stage_dir(cfg, self.stage, self.verb) / self.FILE

    def write(self, cfg: Any) -> Path:
        self.finished = self.finished or time.strftime("%Y-%m-%dT%H:%M:%S")
        return write_json(self.path(cfg), self.as_dict())

    @classmethod
    def read(cls, cfg: Any, stage: str) -> Any:
        """The result a verb wrote, or an error naming the command that writes it."""
        path = stage_dir(cfg, stage, cls.VERB) / cls.FILE
        if not path.is_file():
            raise RagdistillError(f"{path}: no {cls.VERB} result; run `ragdistill {stage} {cls.VERB}` first (same paths.work_dir)")
        return cls.from_dict(read_json(path), str(path))

    @classmethod
    def from_dict(cls, d: Any, where: str = "result") -> Any:
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or d.get("verb") != cls.VERB or "stage" not in d:
            raise RagdistillError(f"{where}: not a {cls.VERB} result; rerun the verb that writes it")
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TeachResult(VerbResult):
    FILE: ClassVar[str] = "teach.json"
    VERB: ClassVar[str] = "teach"

    kept: int = 0  # training examples written for train


@dataclass
class TrainResult(VerbResult):
    FILE: ClassVar[str] = "train.json"
    VERB: ClassVar[str] = "train"

    student: str = ""  # the trained student's folder (what next-round keeps and export reads)


@dataclass
class Variant:
    """One exported artifact and how closely it reproduces the trained student.

    ``parity`` is in [0, 1] (mean cosine of embeddings, Spearman of scores, share of identical
    greedy outputs: ``metric`` says which); ``quantized`` variants are held to the looser bar."""

    path: str
    parity: float
    metric: str
    quantized: bool = False
    size_mb: float | None = None


@dataclass
class ExportResult(VerbResult):
    FILE: ClassVar[str] = "export.json"
    VERB: ClassVar[str] = "export"

    model: str = ""  # the export folder users load
    variants: dict[str, Any] = field(default_factory=dict)  # name -> Variant (as a dict once read back)

    def gate(self, min_parity: float, min_parity_quantized: float) -> None:
        """The one export rule of every stage: each variant reaches its bar, else the export fails,
        naming the variant (the files stay on disk for inspection)."""
        low = []
        for name, v in self.variants.items():
            v = v if isinstance(v, Variant) else Variant(**v)
            bar = min_parity_quantized if v.quantized else min_parity
            if not v.parity >= bar:  # NaN fails too
                low.append(f"{name} {v.metric} {v.parity:.4f} < {bar}")
        self.details["gate"] = {"min_parity": min_parity, "min_parity_quantized": min_parity_quantized, "failed": low}
        if low:
            raise RagdistillError(
                f"{self.stage} export: parity below the bar for {'; '.join(low)}. The files are in {self.model} for inspection; "
                f"lower {self.stage}.export.min_parity / min_parity_quantized only if that loss is acceptable")

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d["variants"] = {k: asdict(v) if isinstance(v, Variant) else v for k, v in self.variants.items()}
        return d


@dataclass
class EvaluateResult(VerbResult):
    FILE: ClassVar[str] = "results.json"
    VERB: ClassVar[str] = "evaluate"

    split: str = ""
    # system -> metric -> value, side by side: teacher, student_base (before distillation), student
    # (after), and the exports; the trivial baseline (BM25, the raw query) where the stage has one
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


RESULTS: dict[str, type[VerbResult]] = {c.VERB: c for c in (TeachResult, TrainResult, ExportResult, EvaluateResult)}

# ------------------------------------------------------------------------------------ provenance

VERSIONED = ("torch", "transformers", "sentence-transformers", "optimum", "onnxruntime", "trl", "peft", "faiss-cpu", "mteb", "ragas",
             "ragdistill-common", "ragdistill-embedder", "ragdistill-reranker", "ragdistill-generator", "ragdistill-query-rewriter",
             "ragdistill-e2e")
# the config keys two results must share for their figures to sit in one table (the data they measured)
COMPARABLE = ("data.name", "data.path", "data.test_split", "data.max_queries", "data.max_docs")


def versions() -> dict[str, str]:
    """Installed versions of the libraries a figure depends on."""
    import importlib.metadata as md

    out = {}
    for name in VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """The project's commit (``-dirty`` with uncommitted changes), or None outside a git checkout."""
    import subprocess

    from ragdistill.common.paths import project_home

    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_home(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_home(), capture_output=True,
                               text=True, timeout=10)
        return r.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(cfg: Any) -> dict[str, Any]:
    """What a result was made with: the resolved config, the library versions, the git commit. A
    report joining results from several runs checks these (:func:`mismatches`) before it shows
    their figures side by side."""
    from omegaconf import DictConfig, OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
    return {"config": config, "versions": versions(), "git_commit": git_commit()}


def _get(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def mismatches(reference: dict[str, Any], other: dict[str, Any], keys: tuple[str, ...] = COMPARABLE) -> list[str]:
    """How ``other``'s provenance differs from ``reference``'s: the data keys, then the library
    versions both record. An empty provenance (a result written before it was recorded) is itself one."""
    if not other.get("config"):
        return ["no config recorded (a result from before provenance was written): rerun the verb"]
    out = [f"{k}: {_get(other['config'], k)!r} vs {_get(reference.get('config', {}), k)!r}" for k in keys
           if _get(other["config"], k) != _get(reference.get("config", {}), k)]
    rv, ov = reference.get("versions", {}), other.get("versions", {})
    out += [f"{name} {ov[name]} vs {rv[name]}" for name in sorted(set(rv) & set(ov)) if rv[name] != ov[name]]
    return out

"""Model cards: every exported model folder carries a ``README.md`` a user's own tools read.

Written after ``export`` (what was distilled, from what, how, how to load it) and refreshed after
``evaluate`` (the figures of this run: teacher / student before distillation / student after, side
by side, with the held-out split and its size). Built on the libraries' own card support: the
sentence-transformers card (``SentenceTransformerModelCardData`` / ``CrossEncoderModelCardData``,
``generate_model_card``) for sentence-transformers folders, PEFT's card for the adapter, and
``huggingface_hub.ModelCard`` (what transformers and PEFT cards are) for the metadata every card
shares (``base_model``, ``library_name``, ``pipeline_tag``, ``datasets``, ``model-index``) and for
the other folders. Our section sits between two markers, so a refresh replaces only it.

A folder's kind is read from its files: ``adapter_config.json`` (PEFT), ``colbert_config.json`` or
colbert-ai's ``artifact.metadata`` (ColBERT: its own card is kept, ours added), ``config_sentence_transformers.json`` (bi-encoder or cross-encoder), ``*.onnx`` +
``config.json`` (optimum ONNX), ``config.json`` + weights (transformers). The stage's
:meth:`~ragdistill.common.stage.Stage.export_files` (e.g. the rewriter's ``prompt.json``) are
written into each folder first, so the load snippet can use them.

A PEFT adapter's ``base_model_name_or_path`` is the base model's portable name (a hub id such as
``HuggingFaceTB/SmolLM2-135M-Instruct``), not a path in this machine's model cache; the local path
is kept in ``base_model_local.json`` beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.common.io import read_json, write_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir

log = get_logger(__name__)

BEGIN = "<!-- ragdistill: begin (rewritten by every export and evaluate) -->"
END = "<!-- ragdistill: end -->"
CARD = "README.md"
LOCAL_BASE = "base_model_local.json"
# evaluate's systems, in the order the card shows them; the rest (exports, baselines) follow
ORDER = ("teacher", "student_base", "student")
LABELS = {"teacher": "teacher", "student_base": "student before distillation", "student": "student after distillation"}
PIPELINE_TAG = {"sentence-transformers": "sentence-similarity", "cross-encoder": "text-ranking", "colbert": "text-ranking",
                "peft": "text-generation", "transformers": "text-generation", "onnx": "text-generation"}


@dataclass
class ExportedModel:
    """One folder a user loads, and what it is."""

    folder: Path
    kind: str  # sentence-transformers | cross-encoder | colbert | peft | transformers | onnx
    architecture: str = ""  # transformers' config.architectures[0], where there is one


def kind_of(folder: Path) -> ExportedModel | None:
    """What ``folder`` holds (see the module docstring); None if it is no model folder."""
    arch = ""
    if (folder / "config.json").is_file():
        try:
            arch = (read_json(folder / "config.json").get("architectures") or [""])[0]
        except (ValueError, OSError):
            arch = ""
    if (folder / "adapter_config.json").is_file():
        return ExportedModel(folder, "peft")
    if (folder / "colbert_config.json").is_file() or (folder / "artifact.metadata").is_file():  # ours, or a colbert-ai checkpoint
        return ExportedModel(folder, "colbert", arch)
    st = folder / "config_sentence_transformers.json"
    if st.is_file():
        kind = "cross-encoder" if read_json(st).get("model_type") == "CrossEncoder" else "sentence-transformers"
        return ExportedModel(folder, kind, arch)
    if (folder / "config.json").is_file():
        if any(folder.glob("*.onnx")):
            return ExportedModel(folder, "onnx", arch)
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            return ExportedModel(folder, "transformers", arch)
    return None


def exported_models(stage: Any, cfg: Any) -> list[ExportedModel]:
    """The model folders under ``<work_dir>/<stage>/export/`` (``model/``, ``adapter/``, ``onnx/``, ...)."""
    out = stage_dir(cfg, stage.name, "export")
    found = [kind_of(p) for p in sorted(out.iterdir()) if p.is_dir() and not p.name.startswith(".")] if out.is_dir() else []
    return [m for m in found if m is not None]


# ------------------------------------------------------------------------------------------ facts


def _verb_config(cfg: Any, stage: str, verb: str) -> Any:
    """The config ``verb`` ran with (its ``config.yaml``), else the current one."""
    from omegaconf import OmegaConf

    p = stage_dir(cfg, stage, verb) / "config.yaml"
    return OmegaConf.load(p) if p.is_file() else cfg


def _result(cfg: Any, stage: str, verb: str, name: str) -> dict[str, Any]:
    p = stage_dir(cfg, stage, verb) / name
    try:
        return read_json(p) if p.is_file() else {}
    except (ValueError, OSError):
        return {}


def _teacher_text(tcfg: Any) -> str:
    from ragdistill.common.models import portable_name

    members = list(tcfg.get("members") or [])
    if members:
        return f"ensemble ({tcfg.get('combine', 'concat')}) of " + ", ".join(_teacher_text(m) for m in members)
    model = str(tcfg.get("model") or "")
    return f"`{portable_name(model)}` ({tcfg.get('backend')})" if model else f"`{tcfg.get('backend')}`"


def _data_text(cfg: Any) -> str:
    d = cfg.data
    name = d.get("path") or d.get("name")
    limits = ", ".join(f"{k}={d.get(k)}" for k in ("max_queries", "max_docs") if d.get(k) is not None)
    # how many held-out inputs were scored is the Results section's n (stages slice their own way too)
    return f"`{name}`: trained on split `{d.get('train_split')}`, evaluated on held-out split `{d.get('test_split')}`" + (
        f" (a slice: {limits})" if limits else "")


def _overrides(c: Any) -> list[str]:
    ov = list((c.get("run") or {}).get("overrides") or [])
    return [o for o in ov if not o.lstrip("+~").startswith(("paths.", "hydra.", "run.overrides"))]


def reproduce_commands(stage: str, cfg: Any) -> list[str]:
    """The command of each verb that ran, with the overrides it ran with (machine paths left out)."""
    import shlex

    from ragdistill.common.stage import VERBS

    out = []
    for verb in VERBS:
        p = stage_dir(cfg, stage, verb) / "config.yaml"
        if verb != "export" and not p.is_file():
            continue
        c = _verb_config(cfg, stage, verb)
        out.append(" ".join(["ragdistill", stage, verb, *(shlex.quote(o) for o in _overrides(c))]))
    return out


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")


def figures(results: dict[str, Any], max_rows: int = 14) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """evaluate's ``results`` (system -> metric -> value) as table columns and rows: teacher, student
    before and after first, then the other systems; numeric metrics only."""
    systems = results.get("results") or {}
    cols = [s for s in ORDER if s in systems] + [s for s in systems if s not in ORDER]
    metrics: list[str] = []
    for s in cols:
        for k, v in (systems[s] or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in metrics:
                metrics.append(k)
    rows = [(m, [_num(systems[s].get(m)) if isinstance(systems[s].get(m), int | float) else "" for s in cols]) for m in metrics[:max_rows]]
    return cols, rows


# ------------------------------------------------------------------------------------------ loading


_ST_CLASSES = {  # kind -> (sentence-transformers class, a line that uses it)
    "sentence-transformers": ("SentenceTransformer",
                              'embeddings = model.encode(["what causes scurvy?", "Scurvy is caused by a lack of vitamin C."])'),
    "cross-encoder": ("CrossEncoder", 'scores = model.predict([("what causes scurvy?", "Scurvy is caused by a lack of vitamin C."), '
                                      '("what causes scurvy?", "Paris is in France.")])'),
}


def load_snippet(model: ExportedModel, base_model: str) -> str:
    """Python that loads ``model.folder`` with its own library (the README's and each card's)."""
    f = str(model.folder)
    onnx = sorted(p.relative_to(model.folder).as_posix() for p in model.folder.glob("onnx/*.onnx"))
    backend = ', backend="onnx"' if "onnx/model.onnx" in onnx else ""
    quant = [p for p in onnx if p != "onnx/model.onnx"]
    if model.kind in _ST_CLASSES:  # sentence-transformers' two model classes load the same way
        cls, use = _ST_CLASSES[model.kind]
        lines = [f"from sentence_transformers import {cls}", "", f'model = {cls}("{f}"{backend})', use]
        if quant:
            lines.append(f'int8 = {cls}("{f}", backend="onnx", model_kwargs={{"file_name": "{quant[0]}"}})')
        return "\n".join(lines)
    if model.kind == "colbert":
        return "\n".join(["from ragdistill.reranker.colbert import ColbertStudent  # pip install ragdistill-reranker", "",
                          f'model = ColbertStudent.load("{f}")',
                          'scores = model.score_pairs("what causes scurvy?", ["Scurvy is caused by a lack of vitamin C.", "Paris is in France."])'])
    chat = _chat_lines(model.folder)
    if model.kind == "peft":
        return "\n".join(["from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                          f'base = AutoModelForCausalLM.from_pretrained("{base_model}")',
                          f'model = PeftModel.from_pretrained(base, "{f}")',
                          f'tok = AutoTokenizer.from_pretrained("{f if (model.folder / "tokenizer_config.json").is_file() else base_model}")',
                          *chat])
    if model.kind == "onnx":
        cls = "ORTModelForCausalLM"
        if model.architecture.endswith("ForTokenClassification"):
            cls = "ORTModelForTokenClassification"
        elif model.architecture.endswith("ForConditionalGeneration") and "T5" in model.architecture:
            cls = "ORTModelForSeq2SeqLM"
        lines = [f"from optimum.onnxruntime import {cls}", "from transformers import AutoTokenizer", "",
                 f'model = {cls}.from_pretrained("{f}")', f'tok = AutoTokenizer.from_pretrained("{f}")']
        return "\n".join(lines + (chat if cls == "ORTModelForCausalLM" else []))
    return "\n".join(["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                      f'model = AutoModelForCausalLM.from_pretrained("{f}")', f'tok = AutoTokenizer.from_pretrained("{f}")', *chat])


def _chat_lines(folder: Path) -> list[str]:
    """Greedy generation from the chat messages the student was trained on: the folder's
    ``prompt.json`` example where the stage ships one, else a plain question."""
    if (folder / "prompt.json").is_file() and "example" in read_json(folder / "prompt.json"):
        messages = ['import json', f'messages = json.load(open("{folder}/prompt.json"))["example"]["messages"]  # the trained format']
    else:
        messages = ['messages = [{"role": "user", "content": "What causes scurvy?"}]']
    return ["", *messages,
            'ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")',
            "out = model.generate(ids, max_new_tokens=32, do_sample=False)",
            "print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))"]


# ------------------------------------------------------------------------------------------ the card


def _section(stage: Any, cfg: Any, model: ExportedModel, base_model: str) -> str:
    from omegaconf import OmegaConf

    name = stage.name
    train_cfg = _verb_config(cfg, name, "train")
    train = _result(cfg, name, "train", "train.json")
    export = _result(cfg, name, "export", "export.json")
    results = _result(cfg, name, "evaluate", "results.json")
    lines = [BEGIN, f"## Distilled with ragdistill ({name} stage)", ""]
    if stage.description:
        lines += [f"{stage.description}.", ""]
    lines += ["| | |", "|---|---|",
              f"| base model (the student before distillation) | `{base_model}` |",
              f"| teacher | {_teacher_text(train_cfg.teacher)} |",
              f"| data | {_data_text(train_cfg)} |",
              f"| this folder | `{model.folder.name}/` ({model.kind}) |"]
    if train:
        lines.append(f"| training | {_num(train.get('train_steps', 0))} steps on {_num(train.get('n_items', 0))} examples |")
    variants = export.get("variants") or {}
    for v, info in variants.items():
        if str(info.get("path", "")).startswith(str(model.folder)):
            lines.append(f"| export `{v}` | parity {_num(info.get('parity'))} ({info.get('metric')}) |")
    lines += ["", "### Results", ""]
    if results:
        cols, rows = figures(results)
        split = results.get("split") or train_cfg.data.get("test_split")
        lines += [f"Held-out split `{split}`, n = {_num(results.get('n_items', 0))} (`ragdistill {name} evaluate`, "
                  f"{results.get('finished', '')}):", "",
                  "| metric | " + " | ".join(LABELS.get(c, c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {m} | " + " | ".join(vals) + " |" for m, vals in rows]
    else:
        lines.append(f"Not evaluated yet: `ragdistill {name} evaluate` (same paths.work_dir) writes the figures here.")
    recipe = OmegaConf.to_yaml(train_cfg[name].train).strip() if name in train_cfg and "train" in train_cfg[name] else ""
    if recipe:
        lines += ["", "### Recipe", "", f"`{name}.train` as trained:", "", "```yaml", recipe, "```"]
    lines += ["", "### Reproduce", "", "```bash", *reproduce_commands(name, cfg), "```",
              "", "### Load", "", "```python", load_snippet(model, base_model), "```", END]
    return "\n".join(lines)


def _card_data(model: ExportedModel, stage: Any, cfg: Any, base_model: str, results: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata (the Hub's model-card fields)."""
    from huggingface_hub import EvalResult

    data: dict[str, Any] = {
        "base_model": base_model,
        "library_name": {"cross-encoder": "sentence-transformers", "colbert": "sentence-transformers", "onnx": "transformers"}.get(model.kind,
                                                                                                                              model.kind),
        "pipeline_tag": PIPELINE_TAG.get(model.kind),
        "tags": ["ragdistill", "distillation", stage.name] + (["onnx"] if model.kind == "onnx" or any(model.folder.glob("onnx/*.onnx")) else []),
        "datasets": [str(cfg.data.get("path") or cfg.data.get("name"))],
        "language": ["en"],
    }
    systems = (results.get("results") or {}).get("student") or {}
    evals = [EvalResult(task_type=PIPELINE_TAG.get(model.kind) or "other", dataset_type=str(cfg.data.get("name")),
                        dataset_name=f"{cfg.data.get('name')} ({results.get('split') or cfg.data.get('test_split')}, n={results.get('n_items')})",
                        dataset_split=str(results.get("split") or cfg.data.get("test_split")), metric_type=k, metric_value=float(v))
             for k, v in systems.items() if isinstance(v, int | float) and not isinstance(v, bool)][:10]
    if evals:
        data["eval_results"] = evals
        data["model_name"] = f"ragdistill-{stage.name}-{model.folder.name}"
    return data


def _library_card(model: ExportedModel, base_model: str, cfg: Any) -> str | None:
    """The sentence-transformers card of the folder, with the base model and data it was distilled
    from (the card a bare save writes says "base model Unknown"); None for other kinds or if it fails."""
    if model.kind not in ("sentence-transformers", "cross-encoder"):
        return None
    from ragdistill.common.models import portable_name

    try:
        from sentence_transformers.base.model_card import generate_model_card

        if model.kind == "cross-encoder":
            from sentence_transformers import CrossEncoder as Cls
        else:
            from sentence_transformers import SentenceTransformer as Cls  # type: ignore[assignment]
        onnx_only = not any(model.folder.glob("*.safetensors")) and (model.folder / "onnx" / "model.onnx").is_file()
        kw: dict[str, Any] = {"backend": "onnx", "model_kwargs": {"file_name": "onnx/model.onnx"}} if onnx_only else {}
        m = Cls(str(model.folder), device="cpu", **kw)
        card = m.model_card_data
        card.base_model = base_model
        card.language = ["en"]
        card.model_name = f"{portable_name(str(cfg.teacher.get('model') or cfg.teacher.get('backend')))} distilled into {base_model} by ragdistill"
        return generate_model_card(m)
    except Exception as e:  # a card is documentation: never fail an export over it
        log.warning("%s: the sentence-transformers card could not be generated (%s); writing ours alone", model.folder, e)
        return None


def portable_adapter(model: ExportedModel) -> None:
    """An adapter's ``base_model_name_or_path`` as the base model's portable name; the local path
    it was trained from goes to ``base_model_local.json``."""
    from ragdistill.common.models import portable_name

    path = model.folder / "adapter_config.json"
    conf = read_json(path)
    base = str(conf.get("base_model_name_or_path") or "")
    name = portable_name(base)
    if name != base:
        write_json(model.folder / LOCAL_BASE, {"base_model_name_or_path": base, "portable": name,
                                               "why": "the local copy the adapter was trained on; the adapter names the portable id"})
        conf["base_model_name_or_path"] = name
        write_text_atomic(path, json.dumps(conf, indent=2) + "\n")


def write_card(stage: Any, cfg: Any, model: ExportedModel, fresh: bool) -> Path:
    """Write (``fresh``: from the library's card) or refresh the card of one exported folder."""
    from huggingface_hub import ModelCard

    from ragdistill.common.models import portable_name

    base_model = portable_name(str(_verb_config(cfg, stage.name, "train").student.model))
    if model.kind == "peft":
        portable_adapter(model)
        base_model = str(read_json(model.folder / "adapter_config.json").get("base_model_name_or_path") or base_model)
    path = model.folder / CARD
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if fresh:
        text = _library_card(model, base_model, cfg) or text
    if not text.strip():
        text = f"# ragdistill {stage.name}: `{model.folder.name}`\n"
    if text.startswith("---\n"):
        card = ModelCard(text)
        body, data = card.text, card.data.to_dict()
    else:  # a card without metadata (ours before the first write, a plain README)
        body, data = text, {}
    section = _section(stage, cfg, model, base_model)
    if BEGIN in body and END in body:
        body = body[: body.index(BEGIN)] + section + body[body.index(END) + len(END):]
    else:
        # ours first, after the title: what a reader needs before the library's generic sections
        m = re.search(r"^# .*$", body, flags=re.M)
        at = m.end() if m else 0
        body = body[:at] + "\n\n" + section + "\n" + body[at:]
    results = _result(cfg, stage.name, "evaluate", "results.json")
    data.pop("model-index", None)
    # PEFT's own tags name the local path (base_model:adapter:<path>)
    data["tags"] = [t for t in data.get("tags") or [] if not str(t).startswith("base_model:")]
    new = _card_data(model, stage, cfg, base_model, results)
    data["tags"] = list(dict.fromkeys([*data["tags"], *new.pop("tags")]))
    data.update({k: v for k, v in new.items() if v is not None})
    from huggingface_hub import ModelCardData

    out = ModelCard(f"---\n{ModelCardData(**data).to_yaml()}\n---\n{body}")
    write_text_atomic(path, str(out))
    return path


def write_export_files(stage: Any, cfg: Any, models: list[ExportedModel]) -> None:
    """The stage's :meth:`export_files` (e.g. the rewriter's ``prompt.json``) into each exported folder."""
    files = stage.export_files(cfg)
    for m in models:
        for name, content in files.items():
            write_json(m.folder / name, content)


def write_cards(stage: Any, cfg: Any, verb: str) -> list[Path]:
    """After ``export``: the stage's shipped files and a fresh card in every exported folder; after
    ``evaluate``: the cards refreshed with this run's figures."""
    models = exported_models(stage, cfg)
    if verb == "export":
        write_export_files(stage, cfg, models)
    paths = []
    for m in models:
        try:
            paths.append(write_card(stage, cfg, m, fresh=verb == "export"))
        except Exception as e:  # a card is documentation: the export it describes stands without it
            log.warning("%s: no model card written (%s: %s)", m.folder, type(e).__name__, e)
    if paths:
        log.info("model cards: %s", ", ".join(str(p) for p in paths))
    from ragdistill.common.ops.hub import push_export

    push_export(stage, cfg, [m.folder for m in models], verb)  # <stage>.export.push_to_hub, when set
    return paths

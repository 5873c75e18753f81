"""The README's "Loading the exports" snippets run as written, one per stage, on folders in each
export's format: the embedder's from its real export; the others built by the libraries the exports
use (a cross-encoder with its ONNX graph, the packaged SmolLM2 as the merged generator, a real LoRA
adapter on it). The rewriter's snippet runs on its real export in the rewriter's test_pipeline.py.
The only edit to a snippet is its ``work/`` folder (and, offline, the adapter's hub base model,
swapped for the local copy that ``base_model_local.json`` names)."""

from __future__ import annotations

import re
import shutil

import pytest
from huggingface_hub import ModelCard

from ragdistill.common.config import compose
from ragdistill.common.io import read_json
from ragdistill.common.models import resolve_model
from ragdistill.common.ops.cards import kind_of, portable_adapter, write_cards
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import project_home
from ragdistill.common.stage import load_stages

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4", "embedder.train.args.max_steps=1",
    "embedder.train.val_fraction=0.34", "embedder.train.early_stopping_patience=0", "embedder.train.mse_corpus_docs=0",
    "embedder.export.parity_texts=8",
]
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def snippets() -> dict[str, str]:
    text = (project_home() / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- load: ([a-z_ ]+) -->\s*```python\n(.*?)```", text, flags=re.S))


def test_the_readme_has_a_snippet_per_stage():
    # the rewriter's runs on its real ONNX export in packages/query_rewriter/tests/test_pipeline.py
    assert set(snippets()) == {"embedder", "reranker", "generator", "generator adapter", "query_rewriter"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme") / "work"
    cfg = compose("embedder", [f"paths.work_dir={work}", *TINY])
    verbs = stage_verbs(load_stages()["embedder"])
    for verb in ("teach", "train", "export"):
        verbs[verb](cfg)
    return work


def run(name: str, work, **swap: str) -> dict:
    code = snippets()[name].replace('"work/', f'"{work}/')
    for old, new in swap.items():
        code = code.replace(old, new)
    scope: dict = {}
    exec(code, scope)
    return scope


def test_embedder_snippet(work):
    assert run("embedder", work)["embeddings"].shape == (2, 384)


def test_reranker_snippet(work):
    from sentence_transformers import CrossEncoder

    d = work / "reranker" / "export" / "model"
    CrossEncoder(resolve_model("minilm-l6"), num_labels=1, max_length=64).save_pretrained(str(d))  # the export's format: torch + onnx/
    CrossEncoder(str(d), backend="onnx", model_kwargs={"export": True}).save_pretrained(str(d))
    assert (d / "onnx" / "model.onnx").is_file()
    assert run("reranker", work)["scores"].shape == (2,)
    # its card, through sentence-transformers' cross-encoder card (base model known) plus ours
    cfg = compose("reranker", [f"paths.work_dir={work}", "run.report_to=[]"])
    (path,) = write_cards(load_stages()["reranker"], cfg, "export")
    card = ModelCard.load(path)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.pipeline_tag == "text-ranking"
    assert "cross-encoder" in card.data.tags and "CrossEncoder(" in card.text and "Not evaluated yet" in card.text


def test_generator_snippets(work):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    local = resolve_model("smollm2-135m-instruct")
    export = work / "generator" / "export"
    shutil.copytree(local, export / "model", ignore=shutil.ignore_patterns("*.gguf", "README.md"))
    assert isinstance(run("generator", work)["answer"], str)

    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(local), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    lora.save_pretrained(export / "adapter")
    portable_adapter(kind_of(export / "adapter"))  # what every export does to it
    assert read_json(export / "adapter" / "adapter_config.json")["base_model_name_or_path"] == SMOLLM2
    local_base = read_json(export / "adapter" / "base_model_local.json")["base_model_name_or_path"]
    scope = run("generator adapter", work, **{f'"{SMOLLM2}"': repr(local_base)})
    assert type(scope["model"]).__name__ == "PeftModelForCausalLM"
    cfg = compose("generator", [f"paths.work_dir={work}", "run.report_to=[]"])
    cards = {p.parent.name: ModelCard.load(p) for p in write_cards(load_stages()["generator"], cfg, "export")}
    assert set(cards) == {"adapter", "model"} and {c.data.base_model for c in cards.values()} == {SMOLLM2}
    assert cards["model"].data.library_name == "transformers" and cards["adapter"].data.library_name == "peft"

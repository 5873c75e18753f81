"""Exports that travel: every exported folder carries a model card (base model, teacher, data and
split, recipe, this run's teacher / before / after figures, the command, how to load it), built on
the libraries' card support; the card's load snippet runs as written; a LoRA adapter names its base
model portably; the rewriter's export ships its prompt."""

from __future__ import annotations

import re
import shutil

import pytest
from huggingface_hub import ModelCard

from ragdistill.common.config import compose
from ragdistill.common.io import read_json
from ragdistill.common.models import resolve_model
from ragdistill.common.ops.cards import BEGIN, END, write_cards
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import stage_dir
from ragdistill.common.stage import load_stages

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4", "embedder.train.args.max_steps=1",
    "embedder.train.val_fraction=0.34", "embedder.train.early_stopping_patience=0", "embedder.train.mse_corpus_docs=0",
    "embedder.export.parity_texts=8", "embedder.evaluate.mteb=false", "embedder.evaluate.speed_texts=2",
    "embedder.evaluate.latency_queries=1", "embedder.evaluate.systems=[teacher,student_base,student]",
]


def snippet(card_text: str) -> str:
    """The card's load snippet (the python block of its Load section)."""
    m = re.search(r"### Load\s+```python\n(.*?)```", card_text, flags=re.S)
    assert m, card_text[-2000:]
    return m.group(1)


def test_embedder_export_card_has_the_run_and_loads(work_dir):
    stage = load_stages()["embedder"]
    verbs = stage_verbs(stage)
    cfg = compose("embedder", [f"paths.work_dir={work_dir}", *TINY, "embedder.export.push_to_hub=me/minilm-scifact"])
    for verb in ("teach", "train", "export"):
        verbs[verb](cfg)
    path = stage_dir(cfg, "embedder", "export") / "model" / "README.md"
    # offline here, so push_to_hub is a dry run: the plan is what upload_folder would send
    plan = read_json(stage_dir(cfg, "embedder", "export") / "push_plan.json")
    files = {f["path"]: f["bytes"] for u in plan["uploads"] for f in u["files"]}
    assert plan["repo_id"] == "me/minilm-scifact" and plan["dry_run"] and plan["uploads"][0]["path_in_repo"] == ""  # the model at the root
    assert {"README.md", "modules.json", "config.json", "tokenizer.json", "onnx/model.onnx"} <= set(files)
    assert any(f.startswith("onnx/model_qint8") for f in files)  # the int8 variant (its file is named for the CPU)
    assert files["README.md"] == path.stat().st_size and plan["n_files"] == len(files)
    assert not any(f.endswith(".lock") or f.startswith(".") for f in files)
    card = ModelCard.load(path)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the portable name, not the cache path
    assert card.data.library_name == "sentence-transformers" and "ragdistill" in card.data.tags
    assert "Unknown" not in card.text.split(END)[1].split("## ")[1]  # the library's card now knows the base model
    assert "Not evaluated yet" in card.text and "`sentence-transformers/all-mpnet-base-v2` (sentence_transformer)" in card.text
    assert "trained on split `train`, evaluated on held-out split `test` (a slice: max_queries=6, max_docs=24)" in card.text
    assert "ragdistill embedder train " in card.text and "embedder.train.args.max_steps=1" in card.text  # the command, with its overrides
    assert "paths.work_dir" not in card.text.split("### Reproduce")[1]
    assert "embedder.train` as trained" in card.text  # the recipe

    results = verbs["evaluate"](cfg)
    card = ModelCard.load(path)
    assert card.text.count(BEGIN) == 1 and "Not evaluated yet" not in card.text  # refreshed in place
    header = "| metric | teacher | student before distillation | student after distillation |"
    assert header in card.text and f"n = {results.n_items}" in card.text
    ndcg = results.results["student"]["ndcg@10"]
    assert re.search(r"\| ndcg@10 \| [0-9.]+ \| [0-9.]+ \| " + re.escape(f"{ndcg:.4g}") + r" \|", card.text)
    assert any(r.metric_type == "ndcg@10" and r.metric_value == pytest.approx(ndcg) for r in card.data.eval_results)

    plan = read_json(stage_dir(cfg, "embedder", "export") / "push_plan.json")
    assert [f["path"] for u in plan["uploads"] for f in u["files"]] == ["README.md"]  # evaluate pushes the refreshed card only

    code = snippet(card.text)  # the snippet a user copies, run as written
    scope: dict = {}
    exec(code, scope)
    assert scope["embeddings"].shape == (2, 384) and "int8" in scope


def test_adapter_names_its_base_portably_and_the_rewriter_ships_its_prompt(work_dir):
    """A real LoRA adapter on the packaged SmolLM2 (its config names the local model cache) and the
    merged-model folder of the rewriter's student: cards through PEFT's and the Hub's card support."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    local = resolve_model("smollm2-135m-instruct")
    cfg = compose("query_rewriter", [f"paths.work_dir={work_dir}", "run.report_to=[]", "student.model=smollm2-135m-instruct",
                                     "query_rewriter.evaluate.test_records=2"])
    export = stage_dir(cfg, "query_rewriter", "export")
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(local), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(export / "adapter")
    assert read_json(export / "adapter" / "adapter_config.json")["base_model_name_or_path"] == local  # what PEFT writes
    shutil.copytree(local, export / "model", ignore=shutil.ignore_patterns("*.gguf", "README.md"))

    stage = load_stages()["query_rewriter"]
    paths = write_cards(stage, cfg, "export")
    assert sorted(p.parent.name for p in paths) == ["adapter", "model"]

    adapter = export / "adapter"
    assert read_json(adapter / "adapter_config.json")["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert read_json(adapter / "base_model_local.json")["base_model_name_or_path"] == local
    card = ModelCard.load(adapter / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert not any(local in str(t) for t in card.data.tags)
    # offline here: the snippet runs with the hub id swapped for the local copy the side file names
    scope: dict = {}
    exec(snippet(card.text).replace('"HuggingFaceTB/SmolLM2-135M-Instruct"', repr(local)), scope)
    assert isinstance(scope["out"], torch.Tensor)

    prompt = read_json(export / "model" / "prompt.json")  # the trained input format, shipped with the weights
    messages = prompt["example"]["messages"]
    assert messages[0] == {"role": "system", "content": prompt["system"]["rewrite"]}
    assert messages[1]["content"].splitlines()[-1].startswith("Follow-up question:")
    assert prompt["max_turns"] == cfg.query_rewriter.teach.max_turns
    card = ModelCard.load(export / "model" / "README.md")
    code = snippet(card.text)
    assert "prompt.json" in code  # the snippet builds the trained format from the shipped prompt
    scope = {}
    exec(code, scope)
    assert scope["messages"] == messages and scope["out"].shape[1] > scope["ids"].shape[1]

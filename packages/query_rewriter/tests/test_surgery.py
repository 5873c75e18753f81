"""Student surgery (surgery.py): the ``pruned:`` and ``bert2bert:`` specs resolve through common's model
registry once this package's student module is imported, and build real models once into the model cache.
(``bert2bert:`` trains, exports and evaluates in test_pipeline.py.)"""

from __future__ import annotations

import pytest

import ragdistill.query_rewriter.student  # noqa: F401  (importing the students registers the specs)
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pruned_student_keeps_evenly_spaced_layers_and_the_first_tokens():
    """``pruned:`` cuts a real causal LM: the kept blocks are the base's own weights (first and last
    included), the vocabulary is the first ids with the merges among them, so every text still
    encodes and decodes exactly, common words keep their ids, rare ones split into kept pieces."""
    import torch
    from transformers import AutoModelForCausalLM

    from ragdistill.common.models import load_tokenizer
    from ragdistill.query_rewriter.surgery import kept_layers

    assert kept_layers(30, 4) == [0, 10, 19, 29] and kept_layers(30, 1) == [0] and kept_layers(4, 4) == [0, 1, 2, 3]
    path = resolve_model("pruned:smollm2:2:4096")
    assert resolve_model("pruned:smollm2:2:4096") == path  # built once
    base = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32)
    small = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert small.config.num_hidden_layers == 2 and small.config.vocab_size == 4096
    for mine, theirs in zip(small.model.layers, [base.model.layers[0], base.model.layers[-1]], strict=True):
        assert torch.equal(mine.mlp.down_proj.weight, theirs.mlp.down_proj.weight)
    assert torch.equal(small.get_input_embeddings().weight, base.get_input_embeddings().weight[:4096])
    assert small.get_output_embeddings().weight.data_ptr() == small.get_input_embeddings().weight.data_ptr()  # still tied
    full_tok, tok = load_tokenizer("smollm2"), load_tokenizer(path)
    assert len(tok) == 4096 and tok.eos_token == full_tok.eos_token == "<|im_end|>"
    text = "Politkovskaya's murder: what did the 2016 inquiry find? Ünïcödé ok"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < 4096 and tok.decode(ids) == text
    assert len(ids) > len(full_tok(text, add_special_tokens=False)["input_ids"])  # rare words split further
    assert tok(" the question", add_special_tokens=False)["input_ids"] == full_tok(" the question", add_special_tokens=False)["input_ids"]
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=True, add_generation_prompt=True)
    out = small.generate(torch.tensor([chat]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] == len(chat) + 3 or int(out[0, -1]) == tok.eos_token_id


@pytest.mark.parametrize(("name", "match"), [
    ("pruned:smollm2", r"write pruned:<causal LM>:<layers>\[:<vocab>\]"),
    ("pruned:smollm2:31", r"layers must be 1\.\.30"),
    ("pruned:smollm2:2:60000", r"vocabulary size 60000 is not below the tokenizer's 49152"),
    ("pruned:smollm2:2:10", r"special tokens .* have ids >= 10; .* pick a larger vocabulary"),
    ("pruned:minilm-l6:2", r"has no model.layers to prune"),
])
def test_pruned_student_bad_specs_are_clear_errors(name, match):
    with pytest.raises(RagdistillError, match=match):
        resolve_model(name)



def test_a_registered_prefix_resolves_through_its_builder(tmp_path, monkeypatch):
    from ragdistill.common import models

    monkeypatch.setattr(models, "_BUILDERS", dict(models._BUILDERS))  # this test's registration stays in this test
    models.register_model_builder("toy-spec:", lambda name: tmp_path / name.split(":", 1)[1])
    assert resolve_model("toy-spec:abc") == str(tmp_path / "abc")
    with pytest.raises(RagdistillError, match="need a non-empty prefix and a callable"):
        models.register_model_builder("", lambda name: tmp_path)


def test_bad_bert2bert_specs_are_clear_errors():
    with pytest.raises(RagdistillError, match=r"write bert2bert:<encoder>\[:<decoder layers>\]"):
        resolve_model("bert2bert:")
    with pytest.raises(RagdistillError, match=r"smollm2 is a llama; bert2bert needs a BERT-family encoder"):
        resolve_model("bert2bert:smollm2:1")

"""Student surgery: the query rewriter's model specs that no checkpoint ships, built once from one that does.

``bert2bert:<encoder>[:<decoder layers>]`` names a warm-started encoder-decoder (transformers'
``EncoderDecoderModel``, Rothe et al. 2020) built once from any BERT-family checkpoint, packaged
or not: ``bert2bert:minilm-l6:2`` is the seq2seq student no PyPI package ships (no T5 does).

``pruned:<causal LM>:<layers>[:<vocab>]`` names a smaller causal LM cut once from a pretrained one:
``layers`` evenly spaced decoder layers (first and last kept) and, optionally, the first ``vocab``
tokens of its byte-level BPE vocabulary (``pruned:smollm2:4:8192``), the student size for a latency
target the whole model cannot reach.

Both live here, next to the students, and reach ``common.models.resolve_model`` through its
registry (:func:`~ragdistill.common.models.register_model_builder`) when this module is imported
(``student.py`` imports it). Builds go into the model cache once (same folders and format marks as
when they lived in ``common.models``, so earlier builds are reused).
"""

from __future__ import annotations

from pathlib import Path

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.models import FORMAT_FILE, build_once, has_format, register_model_builder, resolve_model
from ragdistill.common.paths import model_cache_dir

log = get_logger(__name__)

WARM_START = "bert2bert:"
PRUNED = "pruned:"
WARM_FORMAT = "1: cross-attention copied from self-attention"
PRUNED_FORMAT = "3: evenly spaced layers, BPE vocabulary cut by rank; its base's tokenizer class"


def warm_started_encoder_decoder(name: str) -> Path:
    """``bert2bert:<encoder>[:<n>]`` -> a saved ``EncoderDecoderModel`` whose encoder is the checkpoint and
    whose decoder is its first ``n`` layers (all by default); the LM head is tied to the word embeddings.
    Each cross-attention starts as a copy of its layer's self-attention, not at random: with a few
    thousand pairs a randomly initialised one never learns to read the encoder (every input got the
    same output here), a copy attends like the pretrained model from the first step. Why fewer
    decoder layers: optimum exports a BERT decoder without a KV cache, so each generated token re-runs
    the decoder over the whole prefix."""
    spec = name[len(WARM_START):]
    base, sep, layers = spec.rpartition(":")
    if not (sep and layers.isdigit()):
        base, layers = spec, ""
    if not base:
        raise RagdistillError(f"model {name!r}: write bert2bert:<encoder>[:<decoder layers>], e.g. bert2bert:minilm-l6:2")
    target = model_cache_dir() / WARM_START.rstrip(":") / (base.replace("/", "--") + (f"-dec{layers}" if layers else ""))

    def build(tmp: Path) -> None:
        from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel

        src = resolve_model(base)
        enc_cfg = AutoConfig.from_pretrained(src)
        if enc_cfg.model_type not in ("bert", "roberta", "xlm-roberta", "electra"):
            raise RagdistillError(f"model {name!r}: {base} is a {enc_cfg.model_type}; bert2bert needs a BERT-family encoder")
        n = int(layers) if layers else enc_cfg.num_hidden_layers
        if not 1 <= n <= enc_cfg.num_hidden_layers:
            raise RagdistillError(f"model {name!r}: decoder layers must be 1..{enc_cfg.num_hidden_layers}")
        log.info("warm-starting %s from %s (decoder: %d layers) into %s (once)", name, src, n, target)
        tok = AutoTokenizer.from_pretrained(src)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(src, src, decoder_num_hidden_layers=n, tie_encoder_decoder=False)
        for layer in model.decoder.base_model.encoder.layer:
            layer.crossattention.load_state_dict(layer.attention.state_dict())
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        stop = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        for c in (model.config, model.generation_config):
            c.decoder_start_token_id, c.eos_token_id, c.pad_token_id = start, stop, tok.pad_token_id
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / FORMAT_FILE).write_text(WARM_FORMAT)

    return build_once(target, lambda t: has_format(t, WARM_FORMAT), build)


def pruned_causal_lm(name: str) -> Path:
    """``pruned:<base>:<layers>[:<vocab>]`` -> a saved causal LM with ``layers`` of the base's decoder
    layers, evenly spaced with the first and the last kept (the ends matter most: the first reads the
    embeddings, the last writes the logits), and, with ``vocab``, only the first ``vocab`` token ids.

    Why the vocabulary: at this size the tied LM head is most of the cost of a generated token
    (SmolLM2: 28M of 134M weights; with 4 layers, 28M of 42M). A byte-level BPE vocabulary is ordered
    by merge rank, so its first ``vocab`` ids with the merges among them are exactly the tokenizer
    BPE would have learnt with that size: every text still encodes (bytes are always kept), common
    words keep their tokens, rarer ones split into more pieces; the embedding rows are the first
    ``vocab`` rows of the base."""
    parts = name[len(PRUNED):].split(":")
    nums = []
    while len(parts) > 1 and parts[-1].isdigit() and len(nums) < 2:
        nums.insert(0, int(parts.pop()))
    base = ":".join(parts)
    if not base or not nums:
        raise RagdistillError(f"model {name!r}: write pruned:<causal LM>:<layers>[:<vocab>], e.g. pruned:smollm2:4:8192")
    layers, vocab = nums[0], (nums[1] if len(nums) > 1 else None)
    target = model_cache_dir() / PRUNED.rstrip(":") / (base.replace("/", "--") + f"-l{layers}" + (f"-v{vocab}" if vocab else ""))

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = resolve_model(base)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        blocks = getattr(getattr(model, "model", None), "layers", None)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise RagdistillError(f"model {name!r}: {base} ({model.config.model_type}) has no model.layers to prune; "
                                  "pruned: takes a Llama-style causal LM (Llama, Qwen2, SmolLM2, Gemma...)")
        total = len(blocks)
        if not 1 <= layers <= total:
            raise RagdistillError(f"model {name!r}: layers must be 1..{total}")
        keep = kept_layers(total, layers)
        log.info("pruning %s into %s (once): layers %s of %d, vocabulary %s", base, name, keep, total, vocab or "all")
        model.model.layers = torch.nn.ModuleList(blocks[i] for i in keep)
        for i, block in enumerate(model.model.layers):
            if hasattr(getattr(block, "self_attn", None), "layer_idx"):
                block.self_attn.layer_idx = i  # the KV cache is indexed by position in the stack
        model.config.num_hidden_layers = len(keep)
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = [model.config.layer_types[i] for i in keep]
        AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
        if vocab:
            trim_bpe_vocabulary(tmp / "tokenizer.json", vocab, name)
            model.resize_token_embeddings(vocab)  # keeps the first rows; a tied head follows
        model.save_pretrained(tmp, safe_serialization=True)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        (tmp / FORMAT_FILE).write_text(PRUNED_FORMAT)

    return build_once(target, lambda t: has_format(t, PRUNED_FORMAT), build)


def kept_layers(total: int, n: int) -> list[int]:
    """``n`` layer indices out of ``total``, evenly spaced, first and last included."""
    return [0] if n == 1 else [round(i * (total - 1) / (n - 1)) for i in range(n)]


def trim_bpe_vocabulary(tokenizer_json: Path, size: int, name: str = "") -> None:
    """Keep token ids ``< size`` of a fast BPE tokenizer and the merges among them (in place).

    Refuses what would change the meaning of kept ids: a non-BPE model, a special token at or past
    ``size``, or a merge whose result precedes its parts (a vocabulary not in merge order)."""
    import json

    spec = json.loads(tokenizer_json.read_text())
    model = spec.get("model", {})
    where = f"model {name!r}: " if name else ""
    if model.get("type") != "BPE":
        raise RagdistillError(f"{where}vocabulary trimming needs a BPE tokenizer; {tokenizer_json} holds {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    if size >= len(vocab) + len(spec.get("added_tokens", [])):
        raise RagdistillError(f"{where}vocabulary size {size} is not below the tokenizer's {len(vocab)}; drop the :<vocab> part")
    late = [t["content"] for t in spec.get("added_tokens", []) if t["id"] >= size]
    if late:
        raise RagdistillError(f"{where}special tokens {late[:3]} have ids >= {size}; trimming would drop them: pick a larger vocabulary")
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        ida, idb, idr = vocab.get(a), vocab.get(b), vocab.get(a + b)
        if None in (ida, idb, idr) or max(ida, idb) >= idr:
            raise RagdistillError(f"{where}{tokenizer_json}: merge {a!r} + {b!r} is not in rank order; this vocabulary cannot be trimmed by id")
        if idr < size:
            merges.append(m)
    model["vocab"] = {t: i for t, i in vocab.items() if i < size}
    model["merges"] = merges
    tmp = tokenizer_json.with_name(tokenizer_json.name + ".tmp")
    tmp.write_text(json.dumps(spec, ensure_ascii=False))
    tmp.replace(tokenizer_json)


register_model_builder(WARM_START, warm_started_encoder_decoder)
register_model_builder(PRUNED, pruned_causal_lm)

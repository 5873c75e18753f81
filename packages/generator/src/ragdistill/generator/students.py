"""The students as generators: greedy answers to the stage's conversations, with a confidence each.

:class:`LocalGenerator` is every local student (undistilled, distilled, exported) answering the way
``evaluate`` scores it; :class:`ScoredStudent` adds a confidence per answer (``routing.signal``) from
the same ``generate`` call, for calibrate and the routed variant.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.signals import generation_logprobs, mean_logprob, min_logprob, sample_agreement
from ragdistill.common.teachers import Messages
from ragdistill.generator.scoring import answer_of

SAMPLE_TEMPERATURE = 0.7  # the second answer of sample_agreement


class LocalGenerator:
    """A local HF causal LM answering chat prompts (greedy), through common's causal-LM backend."""

    def __init__(self, path: str, max_new_tokens: int, batch_size: int = 8) -> None:
        from ragdistill.common.teachers.local import HFCausalLMTeacher
        from ragdistill.generator.models import load_tokenizer

        self.backend = HFCausalLMTeacher(path, max_new_tokens=max_new_tokens, batch_size=batch_size)
        self.backend.tokenizer = load_tokenizer(path, padding_side="left")  # the model's real end-of-turn token
        self.tokenizer = self.backend.tokenizer
        self.teacher_id = self.backend.teacher_id
        self.model_path = path

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        return self.backend.generate(conversations, **overrides)


class ScoredStudent:
    """The distilled student answering greedily, with a confidence per answer.

    Loads through :class:`LocalGenerator` (same tokenizer, end-of-turn token and greedy decoding), so
    its answers are the ones ``evaluate`` scores; the token log-probabilities come from the same
    ``generate`` call (``output_scores``), no second pass. ``sample_agreement`` is the ROUGE-L
    agreement of the greedy answer with one sampled answer (seeded per batch).
    """

    def __init__(self, path: str, prompt: Any, max_new_tokens: int, signal: str, batch_size: int = 8, seed: int = 42) -> None:
        gen = LocalGenerator(path, max_new_tokens, batch_size)
        self.model, self.tok = gen.backend.model, gen.tokenizer
        self.prompt, self.max_new_tokens, self.signal = prompt, max_new_tokens, signal
        self.batch_size, self.seed = batch_size, seed
        self.model_path = path

    def replies(self, conversations: list[Messages]) -> tuple[list[str], list[float]]:
        """Greedy replies and their confidences, batch by batch."""
        import torch

        texts: list[str] = []
        conf: list[float] = []
        for b in range(0, len(conversations), self.batch_size):
            prompts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations[b : b + self.batch_size]]
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            kw = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self.tok.pad_token_id}
            with torch.inference_mode():
                out = self.model.generate(**enc, **kw, do_sample=False, output_scores=True, return_dict_in_generate=True)
            n_in = enc["input_ids"].shape[1]
            greedy = [t.strip() for t in self.tok.batch_decode(out.sequences[:, n_in:], skip_special_tokens=True)]
            if self.signal == "sample_agreement":
                torch.manual_seed(self.seed + b)
                with torch.inference_mode():
                    s_ids = self.model.generate(**enc, **kw, do_sample=True, temperature=SAMPLE_TEMPERATURE, top_p=1.0, top_k=0)
                samples = [t.strip() for t in self.tok.batch_decode(s_ids[:, n_in:], skip_special_tokens=True)]
                conf += [sample_agreement(answer_of(g, self.prompt)[0], answer_of(s, self.prompt)[0]) for g, s in zip(greedy, samples, strict=True)]
            else:
                fn = mean_logprob if self.signal == "mean_logprob" else min_logprob
                conf += [fn(lp) for lp in generation_logprobs(self.model, out, self.tok.eos_token_id)]
            texts += greedy
        return texts, conf

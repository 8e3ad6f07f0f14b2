"""SDTPModel: a causal LM with its trained pruners, callable like a Hugging Face model.

    from prunelab.methods.sdtp import SDTPModel
    sdtp = SDTPModel.from_pretrained("pruners_dir")            # backbone named in the config
    out = sdtp.generate(**tok(prompts, return_tensors="pt", padding=True),
                        max_new_tokens=32, do_sample=True, temperature=0.7, top_p=0.9)

generate() runs the pruned prefill (inference.prefill: prompt tokens dropped between layers,
per-layer shortened KV caches) and then decodes token by token through those caches
(inference.decode). It reads the usual GenerationConfig fields: max_new_tokens /
max_length, do_sample, temperature, top_k, top_p, min_p, repetition_penalty, eos_token_id,
pad_token_id. Batches may be left- or right-padded (attention_mask); rows are re-packed to
the left padding SDTP needs, and the returned sequences (B, N + new) are left-padded
prompt + new tokens, with pad_token_id after a row's eos, as HF returns them. Beam search
and other decoding strategies are not supported (num_beams must be 1).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from prunelab.errors import PrunelabError

from .config import SDTPConfig
from .inference import decode, prefill
from .io import load_pruners, save_pruners
from .modules import PrunerStack


def left_pad(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_id: int):
    """Re-pack rows so that real tokens sit at the right end (left padding)."""
    if attention_mask is None:
        return input_ids, torch.ones_like(input_ids)
    m = attention_mask.bool()
    if bool(m[:, -1].all()):
        return input_ids, attention_mask
    B, N = input_ids.shape
    ids = torch.full_like(input_ids, pad_id)
    out_m = torch.zeros_like(attention_mask)
    for b in range(B):
        real = input_ids[b][m[b]]
        if real.numel():
            ids[b, N - real.numel():] = real
            out_m[b, N - real.numel():] = 1
    return ids, out_m


def _processors(gc):
    from transformers.generation import (LogitsProcessorList, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                         TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    procs = LogitsProcessorList()
    if gc.repetition_penalty is not None and gc.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(gc.repetition_penalty))
    if gc.do_sample:
        if gc.temperature is not None and gc.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(gc.temperature))
        if gc.top_k is not None and gc.top_k != 0:
            procs.append(TopKLogitsWarper(gc.top_k))
        if gc.top_p is not None and gc.top_p < 1.0:
            procs.append(TopPLogitsWarper(gc.top_p))
        if getattr(gc, "min_p", None):
            procs.append(MinPLogitsWarper(gc.min_p))
    return procs


class SDTPModel(nn.Module):
    """A frozen causal LM (LLaMA family) plus SDTP pruners and the SDTPConfig they run with."""

    def __init__(self, model, pruners: PrunerStack | None, config: SDTPConfig, tokenizer=None,
                 model_name: str | None = None):
        super().__init__()
        if config.pruner == "mlp" and pruners is None:
            raise PrunelabError("SDTPModel with pruner 'mlp' needs trained pruners")
        if config.pruner == "saliency":
            raise PrunelabError("SDTPModel does not run the saliency-only pruner (it needs a backward pass per prompt)")
        if pruners is not None and config.pruner == "mlp":
            # the pruners' own prior weight decides what they do; a config that says otherwise would
            # be saved beside them and mislead whoever reloads the pair
            have, want = float(getattr(pruners, "prior_weight", 0.0)), float(getattr(config, "prior_weight", 0.0))
            if abs(have - want) > 1e-9:
                raise PrunelabError(f"SDTPModel: the pruners were built with prior_weight={have:g} but the config "
                                    f"says prior_weight={want:g}; pass the config they were trained with")
            have_s, want_s = getattr(pruners, "prior_curve", "log"), getattr(config, "prior_curve", "log")
            if have and have_s != want_s:
                raise PrunelabError(f"SDTPModel: the pruners were built with prior_curve={have_s!r} but the config "
                                    f"says prior_curve={want_s!r}; pass the config they were trained with")
        self.model, self.pruners, self.sdtp_config, self.tokenizer = model, pruners, config, tokenizer
        self.model_name = model_name
        if pruners is not None:
            pruners.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype).eval()

    @property
    def config(self):
        return self.model.config

    @property
    def generation_config(self):
        return self.model.generation_config

    @property
    def device(self):
        return next(self.model.parameters()).device

    # -- persistence ------------------------------------------------------------------------
    def save_pretrained(self, directory) -> Path:
        """Pruners + config (sdtp_config.json, pruners.safetensors); the backbone is referenced by name."""
        return save_pruners(self.pruners, self.sdtp_config, directory, self.model_name)

    @classmethod
    def from_pretrained(cls, directory, model=None, tokenizer=None, **config_overrides) -> "SDTPModel":
        """Load pruners saved by save_pretrained / `prunelab train --method sdtp --output-dir`.

        model: the backbone (an HF causal LM) or a prunelab model name; default the name the
        pruners were trained on. config_overrides change inference-only fields (e.g.
        selection="threshold", rope_fix=False); training fields must match the pruners.
        """
        from . import _load
        from .config import TRAINING_FIELDS

        stack, cfg, meta = load_pruners(directory)
        bad = [k for k in config_overrides if k in TRAINING_FIELDS and k not in ("dtype",)]
        if bad:
            raise PrunelabError(f"SDTP fields {bad} were fixed when the pruners were trained; retrain to change them")
        if config_overrides:
            import dataclasses

            cfg = dataclasses.replace(cfg, **config_overrides)
        name = meta.get("model")
        if model is None or isinstance(model, str):
            name = model or name
            if not name:
                raise PrunelabError(f"{directory} names no backbone model; pass model=")
            model, tok = _load.load(name)
            tokenizer = tokenizer or tok
        if model.config.hidden_size != meta["hidden_size"]:
            raise PrunelabError(f"pruners in {directory} are for hidden size {meta['hidden_size']}, "
                                f"the model has {model.config.hidden_size}")
        cfg.stage_layers(len(model.model.layers))   # validates the layers against the depth
        return cls(model, stack, cfg, tokenizer, name)

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        """(last-token logits (B, V), PrunedState) of a pruned prefill (left-padded batch)."""
        return prefill(self.model, self.sdtp_config, input_ids, attention_mask, pruners=self.pruners,
                       generator=generator)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 generation_config=None, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        """Pruned prefill, then sampling/greedy decoding through the pruned caches.

        Returns (B, N + new) left-padded prompts followed by the generated tokens.
        `generator` seeds sampling (torch.multinomial) and the random pruner.
        """
        gc = copy.deepcopy(generation_config if generation_config is not None else self.model.generation_config)
        unused = gc.update(**kwargs)
        if unused:
            raise PrunelabError(f"SDTPModel.generate got unknown arguments {sorted(unused)}")
        if getattr(gc, "num_beams", 1) not in (None, 1):
            raise PrunelabError("SDTPModel.generate supports greedy and sampling only (num_beams=1)")
        eos = gc.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        pad = gc.pad_token_id if gc.pad_token_id is not None else (eos[0] if eos else 0)
        ids, mask = left_pad(input_ids, attention_mask, pad)
        B, N = ids.shape
        if gc.max_new_tokens is not None:
            new = gc.max_new_tokens
        elif gc.max_length is not None:
            new = gc.max_length - N
        else:
            new = 20
        if new <= 0:
            return ids
        procs = _processors(gc)
        logits, st = self.prefill(ids, mask, generator)
        seq = ids
        done = torch.zeros(B, dtype=torch.bool, device=ids.device)
        eos_t = torch.tensor(eos, device=ids.device, dtype=torch.long)
        for t in range(new):
            scores = procs(seq, logits.float())
            if gc.do_sample:
                probs = torch.softmax(scores, -1)
                tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                tok = scores.argmax(-1)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            seq = torch.cat([seq, tok[:, None]], 1)
            if eos:
                done = done | torch.isin(tok, eos_t)
            if bool(done.all()) or t == new - 1:
                break
            logits = decode(self.model, st, tok[:, None])[:, -1]
        return seq

    def forward(self, *args, **kwargs):
        raise PrunelabError("SDTPModel is for generation: call .generate() or .prefill() (training uses train_pruners)")

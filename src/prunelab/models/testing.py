"""Helpers for tests of pruning code (any module): example inputs, random masks, logits."""
from __future__ import annotations

import torch


def example_batch(model, batch: int = 2, length: int = 7, seed: int = 0) -> dict:
    """Random token ids (with padding in the last row) suited to the model's forward."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, length - 2:] = 0
    eos = getattr(model.config, "eos_token_id", None)
    if isinstance(eos, int):  # one end-of-sequence token per row (T5 classifiers pool at it)
        ids[:-1, -1] = eos
        ids[-1, length - 3] = eos
    inputs = {"input_ids": ids, "attention_mask": mask}
    head = type(model).__name__
    if getattr(model.config, "is_encoder_decoder", False) and not head.endswith(
            ("ForSequenceClassification", "ForQuestionAnswering")):
        inputs["decoder_input_ids"] = torch.randint(1000, 2000, (batch, 5), generator=g)
        inputs["decoder_input_ids"][:, 0] = 0
    return inputs


def outputs(model, inputs) -> torch.Tensor:
    """The model's main output tensor (logits, or last hidden state for base models)."""
    with torch.no_grad():
        out = model(**inputs)
    for key in ("logits", "start_logits", "last_hidden_state"):
        value = getattr(out, key, None)
        if value is not None:
            if key == "start_logits":
                return torch.cat([out.start_logits, out.end_logits], dim=-1)
            return value
    return out[0]


def random_masks(adapter, heads=True, neurons=True, hidden=True, keep=0.6, seed=0) -> dict:
    """Binary masks keeping about `keep` of each block (at least one unit per block), as
    set_masks / prune_masked arguments. Head masks are per q head (whole GQA groups)."""
    g = torch.Generator().manual_seed(seed)

    def draw(n):
        m = (torch.rand(n, generator=g) < keep).double()
        if n and m.sum() == 0:
            m[torch.randint(n, (1,), generator=g)] = 1.0
        return m

    out = {}
    if heads:
        out["head_mask"] = {i: draw(b.num_units).repeat_interleave(b.group_size)
                            for i, b in enumerate(adapter.attention_blocks())}
    if neurons:
        out["neuron_mask"] = {i: draw(f.size) for i, f in enumerate(adapter.ffn_blocks())}
    if hidden:
        out["hidden_mask"] = draw(adapter.hidden_size)
    return out

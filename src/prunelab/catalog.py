"""What `prunelab list` prints: every method, model, task and method component with one line
about it. Methods and components describe themselves in their registry (Method.description,
Component.description); models and tasks have no description field, so theirs are here.
"""
from __future__ import annotations

MODELS = {
    "minilm-l6": "MiniLM-L6-H384 (BERT-style encoder, 22M params): GLUE / SQuAD fine-tuning",
    "smollm2-135m": "SmolLM2-135M (LLaMA-style decoder): language modelling, SDTP token pruning",
    "tiny-bert": "random 2-layer BERT (hidden 64) for fast tests",
    "tiny-roberta": "random 2-layer RoBERTa (hidden 64) for fast tests",
    "tiny-t5": "random 2+2-layer T5 encoder-decoder (ReLU FFN) for fast tests",
    "tiny-t5-gated": "random 2+2-layer T5 with gated-GELU FFN (T5 v1.1 style) for fast tests",
    "tiny-llama": "random 2-layer LLaMA decoder (GQA, hidden 64) for fast tests",
}

TASKS = {
    "glue/sst2": "GLUE SST-2: sentence sentiment, 2 classes",
    "glue/mnli": "GLUE MNLI: entailment / neutral / contradiction (matched dev; dev_mismatched split too)",
    "glue/qnli": "GLUE QNLI: does the sentence answer the question",
    "glue/qqp": "GLUE QQP: are two Quora questions duplicates",
    "glue/rte": "GLUE RTE: textual entailment, 2 classes",
    "glue/mrpc": "GLUE MRPC: are two sentences paraphrases",
    "glue/cola": "GLUE CoLA: grammatical acceptability",
    "glue/stsb": "GLUE STS-B: sentence similarity, regression 0-5",
    "squad": "SQuAD v1.1: extractive question answering",
    "squad_v2": "SQuAD v2.0: extractive QA with unanswerable questions",
    "cnn_dailymail": "CNN/DailyMail 3.0.0: abstractive news summarization (encoder-decoder models)",
    "wikitext2": "WikiText-2 raw: causal language modelling",
}


def methods() -> list[tuple[str, str]]:
    from prunelab.methods.registry import get_method, list_methods

    # a method registered without a description (a user's, a test's) still gets its line
    return [(name, get_method(name).description or "(no description)") for name in list_methods()]


def models() -> list[tuple[str, str]]:
    from prunelab.models.load import list_models

    return [(name, MODELS.get(name, "")) for name in list_models()]


def tasks() -> list[tuple[str, str]]:
    from prunelab.tasks import get_task, list_tasks

    out = []
    for name in list_tasks():
        task = get_task(name)
        about = TASKS.get(name, "")
        metric = f"metric {task.metric}, {'higher' if task.higher_is_better else 'lower'} is better"
        out.append((name, f"{about} ({metric})" if about else metric))
    return out


def components(method: str) -> list[tuple[str, str]]:
    """One line per component: its description (or what its options set, when it has none),
    then the options with the default marked."""
    from prunelab.methods.registry import get_method

    out = []
    for name, comp in get_method(method).components.items():
        about = comp.description or "; ".join(
            f"{opt}: " + (", ".join(f"{k}={v}" for k, v in over.items()) or "no change")
            for opt, over in comp.options.items())
        opts = " | ".join(f"{o}*" if o == comp.default else o for o in comp.options)
        if comp.numeric:
            lo, hi = comp.numeric_range or ("", "")
            opts += f" | any number for {comp.numeric}" + (f" in [{lo}, {hi}]" if comp.numeric_range else "")
        out.append((name, f"{about}  [options: {opts}; * = default]"))
    return out


def format_rows(rows: list[tuple[str, str]]) -> str:
    width = max((len(n) for n, _ in rows), default=0)
    return "\n".join(f"{n.ljust(width)}  {d}".rstrip() for n, d in rows)

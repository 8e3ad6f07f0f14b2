"""Tasks: data loading, encoding, batching and metrics for each benchmark.

    task = get_task("glue/sst2")            # or the alias "sst2"
    examples = task.load("train", limit=1000, seed=0)
    features = task.encode(examples, tokenizer, max_length=128)
    for group in task.batches(features, 32, shuffle=True, seed=epoch):
        loss = model(**task.collate(group, tokenizer)).loss
    task.evaluate(model, dev_features, tokenizer, 64, "cuda")   # {..., "score": ...}
"""
from prunelab.tasks.base import Task, get_task, list_tasks, register_task

# Importing the task modules registers their tasks.
from prunelab.tasks import glue, lm, squad, summarization  # noqa: E402,F401  isort: skip

__all__ = ["Task", "get_task", "list_tasks", "register_task"]

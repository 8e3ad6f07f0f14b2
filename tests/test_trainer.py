"""APT, Mask Tuning and LoRA+Prune inside a user's own transformers Trainer."""
import subprocess
import sys

import pytest
import torch

from prunelab.models import get_family
from prunelab.models.load import load_model
from prunelab.tasks import get_task

WORDS = {1: ["good", "great", "fine", "lovely"], 0: ["bad", "awful", "dull", "poor"]}


def dataset(tokenizer, n):
    from datasets import Dataset

    rows = [{"text": f"a {WORDS[i % 2][i % 4]} film number {i}", "label": i % 2} for i in range(n)]
    ds = Dataset.from_list(rows)
    return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=32), batched=True, remove_columns=["text"])


@pytest.mark.parametrize("method, config, check", [
    ("apt", {"sparsity": 0.5}, "nonemb"),
    ("masktune", {"sparsity": 0.5, "num_samples": 32, "constraint": "params"}, "nonemb"),
    ("lora_prune", {"sparsity": 0.5, "num_samples": 32, "constraint": "params"}, "nonemb"),
])
def test_method_inside_a_trainer_reaches_its_sparsity_and_exports(tmp_path, method, config, check):
    from transformers import DataCollatorWithPadding, TrainerCallback, TrainingArguments

    from prunelab.trainer import PruningTrainer

    torch.manual_seed(0)
    loaded = load_model("tiny-bert", get_task("glue/sst2"))
    dense = get_family(loaded.model).param_count(non_embedding=True)
    args = TrainingArguments(output_dir=str(tmp_path / "tr"), max_steps=12, per_device_train_batch_size=8,
                             learning_rate=1e-3, eval_strategy="steps", eval_steps=4, logging_steps=4,
                             save_strategy="no", report_to=[], use_cpu=True, seed=0)
    trainer = PruningTrainer(model=loaded.model, args=args, method=method, method_config=config,
                             train_dataset=dataset(loaded.tokenizer, 96), eval_dataset=dataset(loaded.tokenizer, 16),
                             processing_class=loaded.tokenizer, data_collator=DataCollatorWithPadding(loaded.tokenizer))
    checks = []

    class OptimizerMatchesModel(TrainerCallback):
        # before every optimizer step: it steps exactly the live trainable parameters
        def on_pre_optimizer_step(self, args, state, control, **kw):
            live = {id(p) for p in trainer.state_.model.parameters() if p.requires_grad}
            stepped = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
            checks.append(stepped == live)

    trainer.add_callback(OptimizerMatchesModel())
    trainer.train()
    assert len(checks) == 12 and all(checks), checks
    model = trainer.finalize()
    kept = get_family(model).param_count(non_embedding=True) / dense
    assert kept == pytest.approx(0.5, abs=0.06), kept
    out = tmp_path / "export"
    trainer.save_pruned(str(out))
    code = ("import sys; from transformers import AutoModelForSequenceClassification as M;"
            "m = M.from_pretrained(sys.argv[1], trust_remote_code=True); assert 'prunelab' not in sys.modules;"
            "print(m.config.num_labels)")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_bad_trainer_input_is_one_line(tmp_path):
    from transformers import TrainingArguments

    from prunelab.errors import PrunelabError
    from prunelab.trainer import PruningTrainer

    loaded = load_model("tiny-bert", get_task("glue/sst2"))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True,
                             gradient_accumulation_steps=2)
    with pytest.raises(PrunelabError, match="gradient_accumulation_steps=1"):
        PruningTrainer(model=loaded.model, args=args, method="apt", processing_class=loaded.tokenizer)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True)
    with pytest.raises(PrunelabError, match="unknown method 'aptt'"):
        PruningTrainer(model=loaded.model, args=args, method="aptt", processing_class=loaded.tokenizer)

"""Every export gets a README.md: measured figures, widths, how to load, the command that made it."""
import shlex

from prunelab.cli import build_config, parser
from prunelab.config import RunConfig, TrainConfig
from prunelab.model_card import command_for, write_model_card
from prunelab.run import run


def test_card_states_figures_and_a_command_that_rebuilds_the_same_config(sst2_dir, tmp_path):
    cfg = RunConfig(model="tiny-bert", task="glue/sst2", method="apt", seed=2, data_dir=sst2_dir,
                    method_args={"sparsity": 0.5}, output_dir=str(tmp_path / "out"),
                    train=TrainConfig(batch_size=8, max_steps=6, eval_points=2, lr=1e-3),
                    measure={"batch_sizes": [4], "seq_len": 16, "repeats": 1, "warmup": 0, "min_seconds": 0})
    row = run(cfg, tmp_path / "r.db")
    card = write_model_card(cfg.output_dir, row, "classification").read_text()
    assert f"run `{row['id']}`" in card and "AutoModelForSequenceClassification" in card
    assert f"{row['metrics']['params']:,}" in card and "sparsity=0.5" in card
    # the command in the card, parsed by the CLI, is the same run (same config hash)
    command = card.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    args = parser().parse_args(shlex.split(command)[1:])
    assert build_config(args).resolve().hash() == row["id"]


def test_command_for_defaults_is_short():
    cmd = command_for(RunConfig(model="tiny-bert", task="glue/sst2", method="ft").to_dict())
    assert "--set" not in cmd and "--arg" not in cmd

"""Optional TensorBoard logging: training loss, learning rate and dev metrics as scalars."""
from __future__ import annotations

from prunelab.errors import PrunelabError
from prunelab.train.callbacks import Callback


class TensorBoardLogger(Callback):
    def __init__(self, log_dir: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PrunelabError("TensorBoard logging needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir)

    def on_step_end(self, state):
        self.writer.add_scalar("train/loss", state.loss.item(), state.step)
        self.writer.add_scalar("train/lr", state.optimizer.param_groups[0]["lr"], state.step)
        for k, v in state.log.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"method/{k}", v, state.step)

    def on_eval(self, state, metrics):
        for k, v in metrics.items():
            self.writer.add_scalar(f"dev/{k}", v, state.step)
        self.writer.add_scalar("dev/train_seconds", state.train_seconds, state.step)

    def on_train_end(self, state):
        self.writer.close()

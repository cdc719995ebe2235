"""The training state a checkpoint stores: a plain record, below both the training loop
(``tinygpt.train``, which fills it in) and the checkpoint format (``checkpoint.py``, which
writes and reads it), so loading a model never imports the training loop."""

from dataclasses import dataclass, field


@dataclass
class TrainingState:
    """Where a run stands; everything a checkpoint needs besides weights, optimizer and RNG."""

    epoch: int = 0  # 0-based epoch in progress (== num_epochs when finished)
    batch_in_epoch: int = 0  # batches of this epoch already trained on
    epoch_order: list = None  # the order of this epoch's batches (drawn at its start)
    global_step: int = -1  # the book counts from -1, so the first step is step 0
    tokens_seen: int = 0
    train_losses: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    track_tokens_seen: list = field(default_factory=list)
    finished: bool = False
    interrupted: int = 0  # the signal that stopped the run between two steps (2: Ctrl-C)

    def to_dict(self):
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_order": None if self.epoch_order is None else [int(i) for i in self.epoch_order],
            "global_step": self.global_step,
            "tokens_seen": self.tokens_seen,
            "train_losses": [float(x) for x in self.train_losses],
            "val_losses": [float(x) for x in self.val_losses],
            "track_tokens_seen": [int(x) for x in self.track_tokens_seen],
            "finished": self.finished,
        }

    @classmethod
    def from_dict(cls, d):
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "interrupted"}
        return cls(**known)


__all__ = ["TrainingState"]

"""Training: the article's recipe (pool, mutation, noise, L2 loss), resumable and seeded."""

from .trainer import Trainer, cell_loss, pick_device, train

__all__ = ["Trainer", "cell_loss", "pick_device", "train"]

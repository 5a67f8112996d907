"""How well a trained network fits its training set: the final training loss and error, measured once at the
end in eval mode on the whole training split.

The interpolation threshold of a width sweep is where the training error on the labels the network was
trained on (the noisy ones, under label noise) first reaches 0; under label noise the accuracy on the clean
training labels is recorded too (how much of the noise was memorised).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..data import DataSplits, noise
from .evaluate import evaluate


def train_fit(model: nn.Module, data: DataSplits) -> dict[str, Any]:
    """{final_train_loss, final_train_accuracy[, final_train_accuracy_clean, train_labels_changed]}."""
    loss, accuracy = evaluate(model, data.train_x, data.train_y)
    out: dict[str, Any] = {"final_train_loss": loss, "final_train_accuracy": accuracy}
    clean = getattr(data, "train_y_clean", None)
    if clean is not None:
        out["final_train_accuracy_clean"] = evaluate(model, data.train_x, clean)[1]
        out["train_labels_changed"] = noise.record(data)["labels_changed"]
    return out

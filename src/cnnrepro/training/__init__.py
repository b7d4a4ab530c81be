"""Training: one loop for every model, the papers' schedules, resumable checkpoints and the input pipeline.

`loop.fit` trains; `schedules` holds the learning-rate recipes; `data` and `augment` turn a dataset into a
decoded uint8 store cropped per epoch; `checkpoint.load_model` rebuilds a trained model for evaluation.
"""

from cnnrepro.training.checkpoint import load_model

__all__ = ["load_model"]

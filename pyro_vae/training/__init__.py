"""Training: the :class:`Trainer` loop, its :mod:`callbacks`, and the state they share."""

from .callbacks import (
    Callback,
    Checkpointing,
    EarlyStopping,
    EpochHooks,
    EpochLog,
    Evaluation,
    KLWarmup,
    LRSchedule,
    Metrics,
    MetricsFile,
    ProgressBar,
    StepHook,
    TensorBoard,
)
from .state import Progress, TrainState
from .trainer import Trainer

__all__ = [
    "Callback", "Checkpointing", "EarlyStopping", "EpochHooks", "EpochLog", "Evaluation",
    "KLWarmup", "LRSchedule", "Metrics", "MetricsFile", "Progress", "ProgressBar", "StepHook",
    "TensorBoard", "TrainState", "Trainer",
]

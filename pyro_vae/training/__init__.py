"""Training: the :class:`Trainer` loop, its :mod:`callbacks`, and the state they share;
:mod:`averaging` keeps an average of the weights."""

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
from .averaging import WeightAverage
from .state import Progress, TrainState
from .trainer import Trainer

__all__ = [
    "Callback", "Checkpointing", "EarlyStopping", "EpochHooks", "EpochLog", "Evaluation",
    "KLWarmup", "LRSchedule", "Metrics", "MetricsFile", "Progress", "ProgressBar", "StepHook",
    "TensorBoard", "TrainState", "Trainer", "WeightAverage",
]

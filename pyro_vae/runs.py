"""A run folder: the one place that creates, describes and reads one.

A run folder holds ``config.json`` (the run's settings, and under ``"run"`` the world
size, library versions, command line and start time), ``metrics.jsonl``, checkpoints
(``checkpoint.pt``, older ``checkpoint-e*-s*.pt``, ``best.pt`` when early stopping
kept one) and figures. This module owns all of it. :func:`prepare` applies one rule
to :func:`pyro_vae.fit` and ``pyro-vae train``: a folder that already holds a run is
continued with ``resume``, replaced with ``overwrite``, and otherwise refused.
:func:`write_config` describes the run; :func:`start_processes` joins the DDP group,
sets threads and seeds; :func:`write_figures` draws the run's figures; :class:`Run`
reads a finished run back for every subcommand.
"""

import dataclasses
import datetime
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

import pyro

from . import plots
from .checkpoint import (
    CHECKPOINT, Checkpoints, check_writable, load_checkpoint, read_json, remove_stale_temps,
    run_path, write_json,
)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
BEST = "best.pt"
VOCAB = "vocab.txt"  # a text model's vocabulary, one word a line
FIGURES = ("samples.png", "reconstructions.png", "curves.png", "class_samples.png")


def holds_run(folder: Path) -> bool:
    return (folder / CONFIG).exists() or (folder / CHECKPOINT).exists()


def prepare(folder, resume: bool = False, overwrite: bool = False, name: str = "run_dir") -> Path:
    """Make ``folder`` ready for a run: writable, and holding no other run unless asked.

    A folder that already holds a run (``config.json`` or a checkpoint) is continued
    with ``resume`` or emptied of that run's files with ``overwrite``; with neither it
    is refused, so a finished run is never overwritten by accident.
    """
    folder = Path(folder)
    flag = "--" if name == "out" else ""
    if resume and overwrite:
        raise ValueError(f"overwrite: cannot be combined with resume (resume continues the "
                         f"run in {name}, overwrite replaces it)")
    check_writable(folder, name)
    if holds_run(folder) and not (resume or overwrite):
        raise ValueError(
            f"{name}: {folder} already holds a run; pass {flag}resume{'=True' * (not flag)} to "
            f"continue it or {flag}overwrite{'=True' * (not flag)} to replace it"
        )
    if overwrite:
        Checkpoints(folder).clear()
        for file in (CONFIG, METRICS, BEST, *FIGURES):
            run_path(folder, file).unlink(missing_ok=True)
    remove_stale_temps(folder)
    return folder


def run_info(world_size: int = 1) -> Dict[str, Any]:
    """What reproduces the environment of a run: processes, versions, command line."""
    return {
        "world_size": world_size,
        "versions": {"pyro_vae": _version(), "pyro": pyro.__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "command": list(sys.argv),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _version() -> str:
    from . import __version__

    return __version__


def write_config(folder, config: Dict[str, Any], world_size: int = 1) -> None:
    """``config.json``: ``config`` and, under ``"run"``, :func:`run_info`."""
    write_json(run_path(folder, CONFIG), {**config, "run": run_info(world_size)})


def read_config(folder) -> Dict[str, Any]:
    """A run's settings from its ``config.json``, without the ``"run"`` description."""
    if not (Path(folder) / CONFIG).is_file():
        raise FileNotFoundError(f"run: {folder} holds no run (no {CONFIG})")
    values = read_json(Path(folder) / CONFIG)
    values.pop("run", None)
    return values


def read_metrics(folder) -> list:
    """The per-epoch rows of a run's ``metrics.jsonl`` (empty before its first epoch)."""
    path = Path(folder) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def default_threads(processes: int = 1) -> int:
    """Half of the machine's cores, shared among ``processes``, at least one.

    torch's own default takes every core, and its threads spin while they wait: on a
    machine busy with anything else an epoch can run ten times slower than on one
    thread. Half the cores keeps most of the speed on an idle machine and leaves room.
    """
    return max(1, (os.cpu_count() or 1) // (2 * processes))


def set_threads(config, processes: int) -> None:
    """torch's CPU threads: ``--threads``, else :func:`default_threads`."""
    torch.set_num_threads(config.threads or default_threads(processes))


def start_processes(config) -> Tuple[torch.device, bool]:
    """This process's device, joined to the ``torchrun`` group when there is one, its
    CPU threads (:func:`set_threads`) and its seed; whether training is distributed."""
    from .distributed import init_from_env, launched, world_size
    from .infer import resolve_device

    device, distributed = resolve_device(config.device), launched()
    if distributed:  # started by torchrun with several processes
        device = init_from_env(device)
    set_threads(config, world_size())
    pyro.set_rng_seed(config.seed)
    return device, distributed


def image_decoder(config, device=None) -> Optional[Callable]:
    """For a run on a VAE's codes (``features``): codes ``[N, 1, 1, D]`` -> that VAE's
    mean images; ``None`` for a run on images."""
    features = getattr(config, "features", None)
    if not features:
        return None
    m1 = Run.load(features, device=device or "cpu").model
    return lambda codes: m1.decode(codes.flatten(1))


def write_figures(model: nn.Module, data, history, out: Path, seed: int = 0,
                  decode: Optional[Callable] = None) -> None:
    """``samples.png``, ``reconstructions.png``, ``curves.png`` (and ``class_samples.png``
    for a model of labelled data) in ``out``. ``decode`` maps model outputs to images
    (a stacked model's codes through its VAE)."""
    decode = decode or (lambda x: x)
    model.eval()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = decode(model.generate(64))
        if model.uses_labels:
            rows = [decode(model.generate(10, y=k)) for k in range(model.num_classes)]
    x, y = data.x_test[:32].to(device), data.y_test[:32].to(device)
    x_hat = model.reconstruct(x, y if model.uses_labels else None)
    plots.save(plots.image_grid(samples, 8, title="samples from the prior"),
               run_path(out, "samples.png"))
    plots.save(plots.reconstructions(decode(x), decode(x_hat)),
               run_path(out, "reconstructions.png"))
    plots.save(plots.training_curves(history), run_path(out, "curves.png"))
    if model.uses_labels:
        plots.save(plots.labelled_rows(torch.stack(rows), list(range(model.num_classes)),
                                       title="samples, one row per class"),
                   run_path(out, "class_samples.png"))
    model.train()


@dataclass
class Run:
    """A trained run read back: its model, config, the checkpoint used, and its folder."""

    folder: Path
    model: nn.Module
    config: Any  # a TrainConfig (or the config class of the run's model)
    checkpoint: Path  # best.pt when one was kept, else checkpoint.pt
    epoch: int

    @classmethod
    def load(cls, folder, device: Optional[str] = "cpu", best: bool = True,
             averaged: bool = True, checkpoint: Optional[str] = None) -> "Run":
        """The run in ``folder`` with its best checkpoint (when early stopping kept one
        and ``best``), else its newest; the model in eval mode on ``device``.
        ``checkpoint`` names another file of the folder instead, e.g. an older
        ``checkpoint-e20-s0.pt`` that ``--keep-checkpoints`` kept.

        A run trained with a weight average holds the average
        (:mod:`pyro_vae.training.averaging`); ``averaged=False`` loads the training
        weights of the same epoch instead, where the checkpoint keeps them."""
        from .config import TrainConfig
        from .infer import resolve_device
        from .train import build_model
        from .training.state import load_model_params

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"run_dir: {folder} is not a folder")
        if checkpoint is not None:
            path = run_path(folder, checkpoint)
            if path.suffix != ".pt" or not path.is_file():
                kept = sorted(p.name for p in folder.glob("*.pt"))
                raise FileNotFoundError(f"checkpoint: {checkpoint!r} is not a checkpoint of "
                                        f"{folder}; it holds {', '.join(kept) or 'none'}")
        else:
            path = folder / BEST if best and (folder / BEST).is_file() else folder / CHECKPOINT
        state = load_checkpoint(path)
        saved = dict(state["config"])
        x_shape, num_classes = saved["x_shape"], saved["num_classes"]
        config = TrainConfig.from_dict(saved)
        if hasattr(config, "vocab") and (folder / VOCAB).is_file():  # wherever the run now lies
            config = dataclasses.replace(config, vocab=str(folder / VOCAB))
        model = build_model(config, x_shape, num_classes)
        params = state["params"]
        if not averaged:
            average = state.get("callbacks", {}).get("weight_average") or {}
            if "training" not in average:
                raise ValueError(f"averaged: {path} holds no average and training weights "
                                 "beside it (the run had no --weight-average, or it had not "
                                 "begun by that epoch)")
            params = {**params, **average["training"]}
        load_model_params(model, params, path)
        model = model.to(resolve_device(device)).eval()
        return cls(folder, model, config, path, int(state.get("epoch", 0)))

    def describe(self) -> str:
        kind = {BEST: "best", CHECKPOINT: "last"}.get(self.checkpoint.name, "kept")
        return f"{self.folder}: {kind} checkpoint, epoch {self.epoch} ({self.checkpoint.name})"

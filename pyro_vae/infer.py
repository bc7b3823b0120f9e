"""The SVI runner: :func:`fit` trains any Pyro model/guide pair on in-memory tensors.

It steps Pyro's ``SVI``, logs one line of metrics per epoch, writes
``metrics.jsonl`` and an atomic checkpoint into a run folder, resumes from it, and
calls hooks. It knows nothing of images, plots or model names.
"""

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm.auto import tqdm

import pyro
import pyro.optim
import pyro.poutine as poutine
from pyro.infer import (
    SVI,
    ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)

from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, atomic_write
from .data import batch_indices
from .evaluate import Tensors, as_tuple, elbo_terms

logger = logging.getLogger(__name__)

ELBOS = {
    "Trace_ELBO": Trace_ELBO,
    "TraceMeanField_ELBO": TraceMeanField_ELBO,
    "TraceGraph_ELBO": TraceGraph_ELBO,
    # max_plate_nesting=1: every model here has the single plate "data".
    "TraceEnum_ELBO": lambda **kw: TraceEnum_ELBO(max_plate_nesting=1, **kw),
    "RenyiELBO": RenyiELBO,
}
METRICS = "metrics.jsonl"

# batches(data, generator) -> the epoch's argument tuples for ``svi.step``.
Batches = Callable[[Tuple[torch.Tensor, ...], torch.Generator], Sequence[Sequence[torch.Tensor]]]


def shuffled_batches(batch_size: int) -> Batches:
    """Batching of :func:`fit` by default: shuffle once per epoch, slice every tensor.

    ``data = (x, y)`` gives batches ``(x[idx], y[idx])``; the last batch is smaller
    when ``batch_size`` does not divide ``N``.
    """

    def batches(data: Tuple[torch.Tensor, ...], generator: torch.Generator):
        indices = batch_indices(data[0].shape[0], batch_size, generator)
        return [tuple(t[idx.to(t.device)] for t in data) for idx in indices]

    return batches


def make_elbo(elbo: Union[str, ELBO], num_particles: int = 1) -> ELBO:
    """An ELBO object from a name in :data:`ELBOS`, or ``elbo`` itself."""
    if isinstance(elbo, ELBO):
        return elbo
    if elbo not in ELBOS:
        raise ValueError(f"elbo: expected one of {sorted(ELBOS)}, got {elbo!r}")
    if int(num_particles) != num_particles or num_particles < 1:
        raise ValueError(f"num_particles: expected a positive integer, got {num_particles!r}")
    return ELBOS[elbo](num_particles=int(num_particles))


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; other values pass through."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is available")
    return device


def rng_state(generator: torch.Generator) -> Dict[str, Any]:
    """Every random state the next step depends on, as plain tensors and lists."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "batches": generator.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(float, np_state[2:])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["batches"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _create_params(model: Callable, guide: Callable, batch: Sequence[torch.Tensor]) -> None:
    """Run guide and model once so every ``pyro.param`` exists in the param store."""
    guide_trace = poutine.trace(guide).get_trace(*batch)
    poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)


def _restore(state: Dict[str, Any], optim: pyro.optim.PyroOptim, source: Path) -> None:
    """Copy checkpointed (unconstrained) parameter values into the param store in place."""
    saved = state["params"]
    current = dict(pyro.get_param_store().named_parameters())
    if set(saved) != set(current):
        raise ValueError(
            f"checkpoint: {source} was written by another model configuration "
            f"(parameters {sorted(set(saved) ^ set(current))[:4]} differ)"
        )
    for name, value in current.items():
        if saved[name].shape != value.shape:
            raise ValueError(
                f"checkpoint: {source} was written by another model configuration "
                f"({name} has shape {list(saved[name].shape)}, expected {list(value.shape)})"
            )
        with torch.no_grad():
            value.copy_(saved[name])
    optim.set_state(state["optim"])


def _read_metrics(path: Path, upto_epoch: int) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["epoch"] <= upto_epoch]


def fit(
    model: Callable,
    guide: Callable,
    data: Tensors,
    *,
    test_data: Optional[Tensors] = None,
    epochs: int = 10,
    batch_size: int = 128,
    elbo: Union[str, ELBO] = "Trace_ELBO",
    optim: Optional[pyro.optim.PyroOptim] = None,
    lr: float = 1e-3,
    seed: Optional[int] = 0,
    device: Union[str, torch.device, None] = None,
    transform: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    evaluate: Optional[Callable[[], Dict[str, float]]] = None,
    run_dir: Union[str, Path, None] = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    config: Optional[Dict[str, Any]] = None,
    hooks: Sequence[Callable[[Dict[str, Any]], None]] = (),
    batches: Optional[Batches] = None,
    step_hooks: Sequence[Callable[[float], None]] = (),
    progress: bool = False,
) -> List[Dict[str, Any]]:
    """Train ``model``/``guide`` with stochastic variational inference.

    Each step takes the next batch of the epoch and calls ``svi.step(*batch)``, so the
    model and guide receive the same positional arguments. By default a batch slices
    every tensor of ``data`` (``model(x)``, or ``model(x, y)`` when ``data = (x, y)``);
    ``batches`` replaces that policy, e.g. to interleave labelled ``(x, y)`` and
    unlabelled ``(x,)`` batches.

    Parameters live in Pyro's param store, as for any ``SVI``: call
    ``pyro.clear_param_store()`` before training an unrelated model in one process.

    :param data: a tensor or tuple of tensors with a shared first dimension ``N``;
        moved to ``device`` once and batched by index.
    :param test_data: held-out data, evaluated after each epoch with
        :func:`pyro_vae.evaluate.elbo_terms` (``test_loss``, ``recon``, ``kl``).
    :param elbo: a name in :data:`ELBOS` or any Pyro ``ELBO`` object.
    :param optim: a Pyro optimiser; default ``pyro.optim.Adam({"lr": lr})``.
    :param seed: seeds Pyro, torch, numpy and python, and the batch order.
    :param device: where ``data`` lives (``"auto"``, ``"cpu"``, ``"cuda"``); the
        networks of ``model`` and ``guide`` must already be there.
    :param transform: ``transform(x_batch, generator)`` applied to the first tensor of
        every batch, e.g. a fresh binarisation each epoch.
    :param evaluate: ``evaluate() -> dict`` of extra metrics merged in each epoch.
    :param run_dir: folder for ``metrics.jsonl`` and ``checkpoint.pt``; none if ``None``.
    :param checkpoint_every: epochs between checkpoints (the last epoch always writes).
    :param resume: continue from ``run_dir/checkpoint.pt`` when it exists.
    :param config: a JSON-able dict stored in each checkpoint.
    :param hooks: ``hook(metrics)`` called after each epoch's metrics are written.
    :param batches: ``batches(data, generator)`` -> the epoch's batches, a sequence of
        argument tuples; called once per epoch with ``data`` on ``device`` and the
        seeded batch-order generator. Default :func:`shuffled_batches` (``batch_size``).
    :param step_hooks: ``hook(progress)`` called before each step with the training
        progress in epochs once that step is done, ``epoch - 1 + (step + 1) / steps``
        (in ``(0, epochs]``), e.g. to anneal ``beta``
        (:class:`pyro_vae.schedules.KLWarmup`).
    :param progress: show a tqdm bar per epoch.
    :returns: the per-epoch metrics, one dict per epoch (earlier epochs included when
        resuming). ``train_loss`` is the objective per item of the epoch's batches.
    """
    data = as_tuple(data)
    n = data[0].shape[0]
    if n == 0:
        raise ValueError("data: the data set is empty")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if int(epochs) != epochs or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative integer, got {epochs!r}")
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: expected a positive integer, got {checkpoint_every!r}")
    if optim is None:
        if not lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
        optim = pyro.optim.Adam({"lr": lr})
    loss = make_elbo(elbo)
    batches = batches or shuffled_batches(batch_size)
    if device is not None:
        device = resolve_device(device)
        data = tuple(t.to(device) for t in data)
        if test_data is not None:
            test_data = tuple(t.to(device) for t in as_tuple(test_data))
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)

    if seed is not None:
        pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    svi = SVI(model, guide, optim, loss)

    history: List[Dict[str, Any]] = []
    start_epoch = 0
    if resume and run_dir is not None and (run_dir / CHECKPOINT).is_file():
        state = load_checkpoint(run_dir / CHECKPOINT)
        _create_params(model, guide, batches(data, generator)[0])
        _restore(state, optim, run_dir / CHECKPOINT)
        set_rng_state(state["rng"], generator)
        start_epoch = int(state["epoch"])
        history = _read_metrics(run_dir / METRICS, start_epoch)
        logger.info("resumed from %s at epoch %d", run_dir / CHECKPOINT, start_epoch)

    for epoch in range(start_epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        epoch_batches = batches(data, generator)
        if not len(epoch_batches):
            raise ValueError(f"batches: the batching policy gave no batches for epoch {epoch}")
        bar = tqdm(epoch_batches, desc=f"epoch {epoch}/{epochs}", leave=False,
                   disable=not progress)
        for step, batch in enumerate(bar):
            batch = list(batch)
            if transform is not None:
                batch[0] = transform(batch[0], generator)
            for hook in step_hooks:
                hook(epoch - 1 + (step + 1) / len(epoch_batches))
            batch_loss = svi.step(*batch)
            if not np.isfinite(batch_loss):
                raise FloatingPointError(
                    f"loss is {batch_loss} at epoch {epoch}, step {step}; the last "
                    "checkpoint is intact (try a smaller learning rate)"
                )
            total += batch_loss
            seen += len(batch[0])
            bar.set_postfix(loss=f"{batch_loss / len(batch[0]):.2f}", refresh=False)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - t0
        metrics: Dict[str, Any] = {
            "epoch": epoch,
            "train_loss": total / seen,
            "epoch_s": epoch_s,
            "images_per_s": seen / epoch_s,
        }
        if test_data is not None:
            metrics.update(elbo_terms(model, guide, test_data, batch_size=max(batch_size, 1000)))
        if evaluate is not None:
            metrics.update(evaluate())
        history.append(metrics)
        logger.info(
            "epoch %d  %s",
            epoch,
            "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch"),
        )
        if run_dir is not None:
            lines = "".join(json.dumps(row) + "\n" for row in history)
            atomic_write(run_dir / METRICS, lambda f: f.write(lines.encode()))
            if epoch % checkpoint_every == 0 or epoch == epochs:
                save_checkpoint(
                    run_dir / CHECKPOINT,
                    {
                        "format": 1,
                        "epoch": epoch,
                        "params": {
                            k: v.detach().cpu()
                            for k, v in pyro.get_param_store().named_parameters()
                        },
                        "optim": optim.get_state(),
                        "rng": rng_state(generator),
                        "config": config or {},
                    },
                )
        for hook in hooks:
            hook(metrics)
    return history

"""The Trainer and each callback: events, schedules, early stopping, the best checkpoint,
optimisers, extra steps, the run-folder rules, ranks."""

import json
import math

import pytest
import torch
from torch import nn

import pyro
from pyro.infer import Trace_ELBO

from pyro_vae import VAE, fit
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.runs import Run
from pyro_vae.steps import FusedStep, OptimizerStep
from pyro_vae.training import callbacks as cb
from pyro_vae.training import trainer as trainer_module
from pyro_vae.training import Callback, Trainer

X_SHAPE = (1, 6, 5)
X = torch.rand((48,) + X_SHAPE, generator=torch.Generator().manual_seed(0)).bernoulli()


def _vae(**kw):
    return VAE(X_SHAPE, z_dim=2, hidden=(8,), **kw)


class Recorder(Callback):
    """A user's callback in a few lines: counts events and adds a metric."""

    def __init__(self):
        self.events = []

    def on_fit_start(self, state, probe):
        self.events.append("fit_start")

    def on_epoch_start(self, state, epoch):
        self.events.append(f"epoch_start {epoch}")

    def on_step_end(self, state, loss):
        self.events.append("step")

    def on_epoch_end(self, state, metrics):
        metrics["steps_so_far"] = state.progress.global_step
        self.events.append(f"epoch_end {metrics['epoch']}")

    def on_fit_end(self, state):
        self.events.append("fit_end")


def test_a_users_callback_sees_every_event_and_its_metric_is_saved(tmp_path):
    vae, recorder = _vae(), Recorder()
    history = fit(vae.model, vae.guide, X, epochs=2, batch_size=16, callbacks=[recorder],
                  run_dir=tmp_path)
    assert recorder.events == ["fit_start", "epoch_start 1", "step", "step", "step",
                               "epoch_end 1", "epoch_start 2", "step", "step", "step",
                               "epoch_end 2", "fit_end"]
    assert [row["steps_so_far"] for row in history] == [3, 6]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["steps_so_far"] for row in rows] == [3, 6]
    assert load_checkpoint(tmp_path / CHECKPOINT)["history"][-1]["steps_so_far"] == 6


class Scripted(Callback):
    """Sets ``metrics[name]`` to the next value of a script each epoch."""

    def __init__(self, name, values):
        self.name, self.values = name, list(values)

    def on_epoch_end(self, state, metrics):
        metrics[self.name] = self.values[metrics["epoch"] - 1]


def _trainer(vae, callbacks, **kw):
    step = FusedStep(vae.model, vae.guide, Trace_ELBO(), lr=1e-2)
    return Trainer(vae.model, vae.guide, step, batch_size=16, callbacks=callbacks, **kw)


def test_early_stopping_keeps_the_best_checkpoint_and_run_load_uses_it(tmp_path):
    vae = _vae()
    stopper = cb.EarlyStopping("score", patience=2, run_dir=tmp_path)
    trainer = _trainer(vae, [Scripted("score", [3, 2, 4, 5, 6, 7]), stopper,
                             cb.Checkpointing(tmp_path)], config={"x_shape": [1, 6, 5]})
    history = trainer.fit((X,), epochs=6)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]  # two epochs without progress
    assert [row["best_epoch"] for row in history] == [1, 2, 2, 2]
    best = load_checkpoint(tmp_path / "best.pt")
    assert (best["epoch"], best["value"]) == (2, 2.0)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 4  # the early stop is saved


def test_early_stopping_needs_a_validation_split():
    vae = _vae()
    with pytest.raises(ValueError, match="^early_stopping: needs val_data"):
        fit(vae.model, vae.guide, X, epochs=2, early_stopping=2)


def test_val_data_gives_val_loss_and_a_best_checkpoint(tmp_path):
    vae = _vae()
    history = fit(vae.model, vae.guide, X[:40], val_data=X[40:], epochs=3, batch_size=8,
                  lr=0.01, run_dir=tmp_path)
    assert all(math.isfinite(row["val_loss"]) for row in history)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["value"] == min(row["val_loss"] for row in history)


@pytest.mark.parametrize("kind, check", [
    ("cosine", lambda lrs: lrs[0] < 0.01 and lrs[-1] < 1e-4 and lrs == sorted(lrs, reverse=True)),
    ("step", lambda lrs: lrs == [0.01] * 4),  # halves every 10 epochs
    ("exponential", lambda lrs: all(b < a for a, b in zip(lrs, lrs[1:]))),
])
def test_lr_schedules(kind, check):
    vae = _vae()
    history = fit(vae.model, vae.guide, X, epochs=4, batch_size=16, lr=0.01, lr_schedule=kind)
    assert check([row["lr"] for row in history])


def test_plateau_halves_the_rate_after_patience():
    vae = _vae()
    schedule = cb.LRSchedule("plateau", 0.01, patience=2, monitor="score")
    trainer = _trainer(vae, [Scripted("score", [3, 2, 2, 2, 2, 2]), schedule])
    history = trainer.fit((X,), epochs=6)
    # epochs 3 and 4 do not improve: the rate halves from the steps of epoch 5 on
    assert [row["lr"] for row in history] == [0.01] * 4 + [0.005] * 2


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers_and_weight_decay(optimizer):
    results = []
    for decay in (0.0, 0.5):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = _vae(name=f"{optimizer}_{decay}")
        fit(vae.model, vae.guide, X, epochs=2, batch_size=16, optimizer=optimizer,
            weight_decay=decay, lr=0.01)
        results.append(vae.decoder.net[0].weight.detach().clone())
    assert not torch.equal(*results)
    assert results[1].norm() < results[0].norm()  # decay shrinks the weights


def test_unknown_optimizer_is_named():
    vae = _vae()
    with pytest.raises(ValueError, match=r"^optimizer: expected one of \['adam', 'adamw', 'sgd'\]"):
        fit(vae.model, vae.guide, X, optimizer="rmsprop")


class WithCritic(VAE):
    """A VAE with a second objective: a critic that learns to predict each image's mean
    pixel from its code, trained by its own optimiser, never by the ELBO."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.critic = nn.Linear(self.z_dim, 1)

    def svi_parameters(self):
        return ((n, p) for n, p in self.named_parameters() if not n.startswith("critic."))

    def critic_loss(self, x):
        target = x.flatten(1).mean(-1, keepdim=True)
        return (self.critic(self.encode(x)) - target).pow(2).mean()

    def extra_steps(self, optimizer):
        return {"critic": OptimizerStep(self.critic.parameters(), self.critic_loss, optimizer)}


def test_a_models_extra_step_has_its_own_optimiser_and_resumes_exactly(tmp_path):
    def run(folder, epochs, resume=False):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = WithCritic(X_SHAPE, z_dim=2, hidden=(8,))
        history = fit(model.model, model.guide, X, epochs=epochs, batch_size=16, lr=0.01,
                      run_dir=folder, resume=resume)
        return model, history

    model, history = run(tmp_path / "a", 4)
    assert history[-1]["critic_loss"] < history[0]["critic_loss"]
    state = load_checkpoint(tmp_path / "a" / CHECKPOINT)
    assert state["extra_optim"]["critic"]["state"]  # Adam moments of the critic
    assert not any(n.startswith("critic") for n in state["optim"]["names"])
    run(tmp_path / "b", 2)
    resumed, _ = run(tmp_path / "b", 4, resume=True)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_fit_obeys_the_run_folder_rules_and_describes_the_run(tmp_path):
    vae = _vae()
    fit(vae.model, vae.guide, X, epochs=1, batch_size=16, run_dir=tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["fit"]["epochs"] == 1 and config["run"]["world_size"] == 1
    assert set(config["run"]["versions"]) == {"pyro_vae", "pyro", "torch", "python"}
    with pytest.raises(ValueError, match="already holds a run"):
        fit(vae.model, vae.guide, X, epochs=1, run_dir=tmp_path)
    fit(vae.model, vae.guide, X, epochs=1, run_dir=tmp_path, overwrite=True)


def test_resume_refuses_another_number_of_processes(tmp_path):
    vae = _vae()
    fit(vae.model, vae.guide, X, epochs=1, batch_size=16, run_dir=tmp_path)
    state = load_checkpoint(tmp_path / CHECKPOINT)
    state["world_size"] = 2
    torch.save(state, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match=r"written by 2 process\(es\), so each step saw 2 x 16 "
                                         r"examples; this run has 1"):
        fit(vae.model, vae.guide, X, epochs=2, batch_size=16, run_dir=tmp_path, resume=True)


def test_ranks_other_than_zero_run_no_writing_callbacks(monkeypatch, tmp_path):
    monkeypatch.setattr(trainer_module, "dist_rank", lambda: 1)
    vae = _vae()
    step = FusedStep(vae.model, vae.guide, Trace_ELBO())
    kept = Trainer(vae.model, vae.guide, step, callbacks=[
        cb.MetricsFile(tmp_path), cb.EpochLog(), cb.Evaluation(X), cb.Checkpointing(tmp_path),
        Recorder()]).callbacks
    assert [type(c).__name__ for c in kept] == ["Checkpointing", "Recorder"]


def test_progress_prints_one_line_per_epoch(capsys):
    vae = _vae()
    fit(vae.model, vae.guide, X, test_data=X[:8], epochs=2, batch_size=16, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if "train_loss" in line]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  train_loss ")


def test_tensorboard_logs_each_metric(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vae = _vae()
    fit(vae.model, vae.guide, X, test_data=X[:8], epochs=2, batch_size=16, run_dir=tmp_path,
        tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("test_loss")] == [1, 2]


def test_run_load_says_which_checkpoint(tmp_path):
    from pyro_vae import TrainConfig, train

    config = TrainConfig.for_model("vae", z_dim=2, hidden=(8,), epochs=2, val_fraction=0.2,
                                   out=str(tmp_path), data=str(_npy(tmp_path)))
    train(config)
    run = Run.load(tmp_path)
    assert run.checkpoint.name == "best.pt" and "best checkpoint" in run.describe()
    assert Run.load(tmp_path, best=False).checkpoint.name == CHECKPOINT


def _npy(tmp_path):
    import numpy as np

    path = tmp_path.parent / f"{tmp_path.name}-images.npy"
    np.save(path, (torch.rand(60, 6, 5) * 255).to(torch.uint8).numpy())
    return path


def test_events_reach_callbacks_that_override_them_only():
    class Counter(Callback):
        def __init__(self):
            self.steps = 0

        def on_step_end(self, state, loss):
            self.steps += 1

    counter, assigned, plain = Counter(), Callback(), Callback()
    assigned.seen = []
    assigned.on_step_start = lambda state: assigned.seen.append(state.progress.step)
    vae = _vae()
    trainer = Trainer(vae.model, vae.guide, FusedStep(vae.model, vae.guide, Trace_ELBO()),
                      batch_size=16, callbacks=[counter, assigned, plain])
    trainer.fit((X,), 1)
    assert counter.steps == 3 and assigned.seen == [0, 1, 2]
    assert trainer.emit("on_epoch_start", 2) == []  # no callback listens to it
    trainer.callbacks.append(Counter())  # a callback added later is called from the next fit
    trainer.fit((X,), 2)
    assert counter.steps == 6 and trainer.callbacks[-1].steps == 3

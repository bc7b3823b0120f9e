"""Weight averaging: the equal and exponential averages of the iterates, what the model
holds and reports, and that training never sees them."""

import pytest
import pyro
import torch

from pyro_vae import VAE, TrainConfig, fit
from pyro_vae.checkpoint import CHECKPOINT, load_checkpoint
from pyro_vae.cli import main
from pyro_vae.runs import Run, read_config
from pyro_vae.train import train
from pyro_vae.training import Callback, WeightAverage

DATA = torch.rand(40, 1, 6, 6, generator=torch.Generator().manual_seed(2)).bernoulli()
EPOCHS, BATCH = 3, 10  # 4 steps an epoch


class Iterates(Callback):
    """The training weights after every step, and the model's weights after each epoch."""

    def __init__(self):
        self.steps, self.ends = [], []

    def on_step_end(self, state, loss):
        self.steps.append({k: v.detach().clone() for k, v in state.module.state_dict().items()})

    def on_epoch_end(self, state, metrics):
        self.ends.append({k: v.detach().clone() for k, v in state.module.state_dict().items()})


def _fit(run_dir=None, **kw):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae, seen = VAE((1, 6, 6), z_dim=2, hidden=(8,)), Iterates()
    history = fit(vae.model, vae.guide, DATA, test_data=DATA[:10], epochs=EPOCHS,
                  batch_size=BATCH, callbacks=[seen], run_dir=run_dir, **kw)
    return vae, seen, history


def _close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_swa_is_the_mean_of_the_weights_after_each_step_from_its_start_epoch():
    vae, seen, history = _fit(weight_average="swa", average_start=1)
    after = seen.steps[4:]  # epochs 2 and 3
    mean = {k: torch.stack([w[k] for w in after]).mean(0) for k in after[0]}
    _close(vae.state_dict(), mean)
    _close(seen.ends[-1], mean)  # what the last epoch evaluated
    _close(seen.ends[0], seen.steps[3])  # before the start: the training weights
    assert [row["averaged_steps"] for row in history] == [0, 4, 8]


def test_ema_follows_its_recursion():
    decay = 0.6
    vae, seen, _ = _fit(weight_average="ema", average_start=0, ema_decay=decay)
    average = seen.steps[0]
    for w in seen.steps[1:]:
        average = {k: decay * average[k] + (1 - decay) * w[k] for k in w}
    _close(vae.state_dict(), average)
    assert not torch.equal(vae.state_dict()["decoder.net.0.weight"],
                           seen.steps[-1]["decoder.net.0.weight"])


def test_training_never_sees_the_average():
    """The same training losses and final training weights with and without averaging;
    the held-out figures differ, because they are the average's."""
    _, plain, without = _fit()
    _, averaged, with_swa = _fit(weight_average="swa", average_start=1)
    assert [r["train_loss"] for r in with_swa] == [r["train_loss"] for r in without]
    _close(averaged.steps[-1], plain.steps[-1])
    assert with_swa[0]["test_loss"] == without[0]["test_loss"]
    assert with_swa[-1]["test_loss"] != without[-1]["test_loss"]


def test_the_checkpoint_holds_the_average_and_resume_is_exact(tmp_path):
    vae, _, history = _fit(tmp_path / "ref", weight_average="swa", average_start=1)
    saved = load_checkpoint(tmp_path / "ref" / CHECKPOINT)
    _close(saved["params"], vae.state_dict())
    assert saved["callbacks"]["weight_average"]["count"] == 8

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_epoch_end(self, state, metrics):
            if metrics["epoch"] == 2:
                raise Stop

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    first = VAE((1, 6, 6), z_dim=2, hidden=(8,))
    options = dict(test_data=DATA[:10], epochs=EPOCHS, batch_size=BATCH, run_dir=tmp_path / "run",
                   weight_average="swa", average_start=1)
    with pytest.raises(Stop):  # after the checkpoint of epoch 2 was written
        fit(first.model, first.guide, DATA, callbacks=[StopAt()], **options)
    pyro.clear_param_store()
    again = VAE((1, 6, 6), z_dim=2, hidden=(8,))
    resumed = fit(again.model, again.guide, DATA, resume=True, **options)
    _close(again.state_dict(), vae.state_dict())
    assert [r["test_loss"] for r in resumed] == [r["test_loss"] for r in history]


def test_resuming_an_averaged_run_without_its_average_is_refused(tmp_path):
    _fit(tmp_path, weight_average="swa", average_start=1)
    pyro.clear_param_store()
    vae = VAE((1, 6, 6), z_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="weight_average: the checkpoint resumed at the end "
                                         r"of epoch 3 \(step 12\) holds a weight average"):
        fit(vae.model, vae.guide, DATA, epochs=4, batch_size=BATCH, run_dir=tmp_path,
            resume=True)


def test_resuming_past_the_start_without_an_average_is_refused(tmp_path):
    pyro.clear_param_store()
    vae = VAE((1, 6, 6), z_dim=2, hidden=(8,))
    fit(vae.model, vae.guide, DATA, epochs=2, batch_size=BATCH, run_dir=tmp_path)
    pyro.clear_param_store()
    vae = VAE((1, 6, 6), z_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"average_start: this run resumes at the end of "
                                         r"epoch 2 .* set average_start to at least 2"):
        fit(vae.model, vae.guide, DATA, epochs=3, batch_size=BATCH, run_dir=tmp_path,
            resume=True, weight_average="swa", average_start=1)


@pytest.mark.parametrize("options, message", [
    ({"weight_average": "polyak"}, r"weight_average: .*'polyak'"),
    ({"weight_average": "ema", "ema_decay": 1.0}, r"ema_decay: expected a number in \(0, 1\)"),
    ({"weight_average": "swa", "average_start": -1}, r"average_start"),
])
def test_bad_averaging_options_are_refused_before_anything_is_written(tmp_path, options,
                                                                      message):
    vae = VAE((1, 6, 6), z_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=message):
        fit(vae.model, vae.guide, DATA, epochs=1, run_dir=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=message):
        WeightAverage(**{k.replace("weight_average", "kind").replace("ema_decay", "decay")
                         .replace("average_start", "start"): v for k, v in options.items()})


def test_the_command_line_adds_averaging_to_a_resumed_run_and_rewrites_its_config(tmp_path):
    out = tmp_path / "run"
    base = ["train", "--data", "mnist-10k", "--train-size", "64", "--z-dim", "2",
            "--hidden", "8", "--batch-size", "32", "--out", str(out)]
    assert main(base + ["--epochs", "1"]) == 0
    with pytest.raises(ValueError, match="averaged: .* holds no average"):
        Run.load(out, averaged=False)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--weight-average", "swa",
                 "--average-start", "1"]) == 0
    assert read_config(out)["weight_average"] == "swa"
    assert read_config(out)["epochs"] == 2
    run = Run.load(out)
    state = load_checkpoint(out / CHECKPOINT)
    assert state["callbacks"]["weight_average"]["count"] == 2
    _close(run.model.state_dict(), state["params"])
    last = Run.load(out, averaged=False).model.state_dict()
    _close(last, {**state["params"], **state["callbacks"]["weight_average"]["training"]})
    assert not torch.equal(last["decoder.net.0.weight"], state["params"]["decoder.net.0.weight"])
    # once the average has begun, its settings are part of the run
    message = r"weight_average is 'swa' there, 'none' here"
    with pytest.raises(ValueError, match=message):
        train(TrainConfig.from_dict({**read_config(out), "epochs": 3,
                                     "weight_average": "none"}), resume=True)

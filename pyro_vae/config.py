"""The configuration of a training run, saved as ``config.json`` in its run folder.

Every field carries its help text; ``pyro-vae train`` has one flag per field
(``z_dim`` -> ``--z-dim``), so a run is reproduced from its ``config.json`` alone.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Tuple


def _field(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything ``pyro_vae.train.train`` needs to reproduce a run."""

    # data
    dataset: str = _field("mnist-10k", "data set name (pyro_vae.data.DATASETS)")
    data_dir: str = _field(None, "folder holding the data set's IDX files")
    binarize: str = _field("none", "'none': intensities in [0, 1]; 'dynamic': a fresh "
                           "Bernoulli sample per epoch, the test set binarised once")
    # model
    model: str = _field("vae", "model name (pyro_vae.models.MODELS)")
    z_dim: int = _field(50, "latent dimension")
    hidden: Tuple[int, ...] = _field((400,), "hidden widths, e.g. 400 or 200,200")
    activation: str = _field("relu", "activation (pyro_vae.nets.ACTIVATIONS)")
    prior: str = _field("normal", "prior p(z): normal, learned, mog, vamp or flow "
                        "(pyro_vae.priors.PRIORS)")
    likelihood: str = _field("bernoulli", "likelihood p(x|z): bernoulli, continuous-bernoulli, "
                             "normal or normal-fixed (pyro_vae.likelihoods.LIKELIHOODS)")
    guide: str = _field("diagonal", "variational family q(z|x): diagonal, lowrank, full or iaf "
                        "(pyro_vae.guides.GUIDES)")
    beta: float = _field(1.0, "weight of the KL term (beta-VAE)")
    mixture_components: int = _field(10, "mixture components of the 'mog' prior")
    pseudo_inputs: int = _field(500, "learnt pseudo-inputs of the 'vamp' prior")
    flow_layers: int = _field(2, "autoregressive flow layers of the 'iaf' guide and "
                              "the 'flow' prior")
    guide_rank: int = _field(2, "rank of the covariance factor of the 'lowrank' guide")
    normal_scale: float = _field(0.1, "pixel standard deviation of the 'normal-fixed' "
                                 "likelihood")
    warmup: str = _field("none", "KL warm-up schedule (pyro_vae.schedules.SCHEDULES): "
                         "none, linear or cyclical")
    warmup_epochs: float = _field(10.0, "epochs of the linear warm-up ramp, or the period "
                                  "of a cyclical one (ramp over its first half)")
    # semi-supervised and conditional models
    labels: int = _field(None, "labels kept, balanced over classes and chosen by seed; "
                         "the rest of the training set is unlabelled (m2); None keeps all")
    alpha: float = _field(200.0, "weight of the classification term alpha log q(y|x) (m2)")
    enum_discrete: str = _field("parallel", "label inference for unlabelled images (m2): "
                                "parallel or sequential enumeration, or none (one sample)")
    features: str = _field(None, "run folder of a trained VAE; its posterior means of the "
                           "images become the data (M1+M2 stacking, use --likelihood normal)")
    # optimisation
    epochs: int = _field(10, "training epochs")
    batch_size: int = _field(128, "images per SVI step")
    lr: float = _field(1e-3, "Adam learning rate")
    clip_norm: float = _field(0.0, "clip each parameter's gradient to this norm (0: off)")
    max_bad_steps: int = _field(0, "steps with a NaN or inf loss skipped before stopping")
    elbo: str = _field("auto", "Pyro ELBO (pyro_vae.infer.ELBOS); auto: the model's own "
                       "(TraceEnum_ELBO for m2, else Trace_ELBO); IWAE trains on the "
                       "importance-weighted bound with --num-particles samples")
    num_particles: int = _field(1, "samples of z per image in the ELBO estimate")
    step: str = _field("auto", "SVI step: 'fused' (the ELBO's differentiable_loss, one fused "
                       "Adam), 'svi' (Pyro's SVI.step), or 'auto' (fused where it applies)")
    seed: int = _field(0, "random seed")
    device: str = _field("auto", "auto, cpu or cuda")
    # run folder
    out: str = _field("runs/vae", "run folder for config, metrics, checkpoint, figures")
    checkpoint_every: int = _field(1, "epochs between checkpoints")
    checkpoint_steps: int = _field(0, "SVI steps between checkpoints as well (0: none)")
    keep_checkpoints: int = _field(2, "checkpoints kept; the newest is checkpoint.pt")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}")
        values = dict(values)
        if "hidden" in values:
            values["hidden"] = parse_hidden(values["hidden"])
        return cls(**values)

    @classmethod
    def load(cls, path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config: {path} does not exist")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config: {path} is not valid JSON ({err})") from None
        return cls.from_dict(values)


def parse_hidden(value) -> Tuple[int, ...]:
    """``"200,200"``, ``400`` or ``[200, 200]`` -> ``(200, 200)``; ``""`` -> ``()``."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"hidden: expected comma-separated integers, got {value!r}") from None
    elif isinstance(value, int):
        value = [value]
    widths = tuple(int(v) for v in value)
    if any(w < 1 for w in widths):
        raise ValueError(f"hidden: expected positive widths, got {widths}")
    return widths

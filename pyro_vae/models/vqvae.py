"""The VQ-VAE of van den Oord, Vinyals & Kavukcuoglu (2017), with a learnt prior.

A convolutional encoder maps an image to a grid of vectors, each replaced by its
nearest entry of a codebook; the decoder reads the quantised grid. The codebook is
an exponential moving average of the encoder outputs assigned to each entry
(appendix A.1 of the paper), codes left unused are restarted from encoder outputs,
and a small causal transformer learns the distribution of code grids for sampling.
See ``docs/vqvae.md`` for the math beside the code and the measured table.
"""

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import constraints

import pyro
import pyro.distributions as dist

from .. import explore
from ..config import TrainConfig, option
from ..distributed import all_sum, world_size
from ..likelihoods import LIKELIHOODS
from ..steps import OptimizerStep
from ..training.callbacks import Callback
from .base import Model, batch_size_of
from .vae import _part

PRIORS = ("transformer", "uniform")
LAPLACE_EPS = 1e-5  # the add-epsilon smoothing of the EMA counts (Sonnet's VQ-VAE-EMA)


@dataclass
class VQVAEConfig(TrainConfig):
    """A run of the VQ-VAE: its code grid, codebook, EMA, and the prior it samples from."""

    model: str = option("vqvae", "model name, or package.module:Class to import one")
    num_codes: int = option(128, "codebook entries K", minimum=2)
    code_dim: int = option(32, "dimension D of each codebook vector", minimum=1)
    channels: Tuple[int, ...] = option((32, 64), "channels of the encoder's stride-2 "
                                       "convolutions, e.g. 32,64 (28x28 -> a 7x7 code grid); "
                                       "the decoder mirrors them")
    likelihood: str = option("bernoulli", "likelihood p(x|z)", choices=lambda: LIKELIHOODS)
    commitment: float = option(0.25, "commitment cost beta of ||z_e - sg(e)||^2")
    decay: float = option(0.99, "decay gamma of the codebook's moving averages")
    dead_after: int = option(10, "training steps a code may go unused before it is restarted "
                             "from an encoder output (0: never)", minimum=0)
    prior: str = option("transformer", "what generate samples code grids from: transformer "
                        "(learnt alongside, on the training codes) or uniform",
                        choices=lambda: PRIORS)
    prior_epochs: int = option(20, "epochs of the learnt prior alone on the fixed codes of "
                               "the training set after the last epoch (the paper's second "
                               "phase); 0: none", minimum=0)
    prior_alongside: bool = option(True, "also fit the learnt prior one step per SVI step "
                                   "while the VQ-VAE trains (false under torchrun)")
    prior_width: int = option(64, "width of the prior's causal transformer", minimum=8)
    prior_layers: int = option(2, "layers of the prior's causal transformer", minimum=1)


# ------------------------------------------------------------------ networks
def _upsampling_paddings(size: int, layers: int) -> Tuple[int, ...]:
    """``output_padding`` of each 3x3, stride-2 transposed convolution that undoes
    ``layers`` ceil-halvings of ``size``, deepest first: ``2 n - 1 + p`` is the side above."""
    sizes = [size]
    for _ in range(layers):
        sizes.append((sizes[-1] + 1) // 2)
    return tuple(sizes[i] - (2 * sizes[i + 1] - 1) for i in reversed(range(layers)))


class GridEncoder(nn.Module):
    """``x: [B, C, H, W]`` -> ``z_e: [B, D, h, w]``: 3x3 stride-2 convolutions (as in
    :class:`~pyro_vae.nets.ConvEncoder`, without its MLP head), then a 1x1 to ``D``."""

    def __init__(self, x_shape: Sequence[int], code_dim: int, channels: Sequence[int]):
        super().__init__()
        layers, width = [], x_shape[0]
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, stride=2, padding=1), nn.ReLU()]
            width = c
        self.net = nn.Sequential(*layers, nn.Conv2d(width, code_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GridDecoder(nn.Module):
    """``z: [..., D, h, w]`` -> the likelihood's ``[..., P, C, H, W]``: the mirror of
    :class:`GridEncoder`, transposed convolutions back to ``H x W``."""

    def __init__(self, x_shape: Sequence[int], code_dim: int, channels: Sequence[int],
                 params_per_pixel: int):
        super().__init__()
        self.out_shape = (params_per_pixel, *x_shape)
        paddings = [_upsampling_paddings(s, len(channels)) for s in x_shape[1:]]
        widths = list(reversed(channels))
        layers = [nn.Conv2d(code_dim, widths[0], 3, padding=1), nn.ReLU()]
        for i, (p_h, p_w) in enumerate(zip(*paddings)):
            out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers += [nn.ConvTranspose2d(widths[i], out, 3, stride=2, padding=1,
                                          output_padding=(p_h, p_w)), nn.ReLU()]
        layers.append(nn.Conv2d(widths[-1], params_per_pixel * x_shape[0], 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-3]
        out = self.net(z.reshape(-1, *z.shape[-3:]))
        return out.reshape(*batch, *self.out_shape)


class CodeTransformer(nn.Module):
    """A causal transformer over a code grid read in raster order, ``L = h w`` cells:

        p(k) = prod_t Cat(k_t | softmax(f(k_<t))),   k_t in {0, ..., K - 1}

    ``forward(codes: [B, L] long) -> logits [B, L, K]``; position ``t`` sees a start
    token and ``k_<t`` only (a causal mask), so one pass scores every cell.
    """

    def __init__(self, num_codes: int, length: int, width: int = 64, layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.num_codes, self.length = num_codes, length
        self.embed = nn.Embedding(num_codes + 1, width)  # the last index is the start token
        self.position = nn.Parameter(torch.randn(length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, num_codes)
        self.register_buffer("causal", torch.full((length, length), -math.inf).triu(1),
                             persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = codes.shape[1]
        start = codes.new_full((codes.shape[0], 1), self.num_codes)
        h = self.embed(torch.cat([start, codes[:, :-1]], 1)) + self.position[:n]
        return self.head(self.body(h, mask=self.causal[:n, :n]))

    @torch.no_grad()
    def sample(self, num: int) -> torch.Tensor:
        """``num`` code sequences ``[num, L]``, one cell at a time (L passes)."""
        codes = torch.zeros(num, 0, dtype=torch.long, device=self.position.device)
        for _ in range(self.length):
            padded = torch.cat([codes, codes.new_zeros(num, 1)], 1)
            logits = self.forward(padded)[:, -1]
            codes = torch.cat([codes, torch.multinomial(logits.softmax(-1), 1)], 1)
        return codes


# ------------------------------------------------------------- the code prior
class UniformCodes(dist.TorchDistribution):
    """p(z): each of the ``h w`` cells is one of the ``K`` codebook vectors, uniformly.

    Values ``[..., D, h, w]``; ``log_prob = -h w log K`` for any grid of codebook
    vectors (the support is not checked: the guide's straight-through value equals a
    codebook vector only up to rounding). ``sample`` draws uniform indices and looks
    them up.
    """

    arg_constraints: Dict[str, Any] = {}
    support = constraints.real

    def __init__(self, codebook: torch.Tensor, grid: Tuple[int, int],
                 batch_shape=torch.Size(), validate_args=None):
        self.codebook, self.grid = codebook, tuple(grid)
        event_shape = torch.Size((codebook.shape[1], *self.grid))
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return UniformCodes(self.codebook, self.grid, batch_shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.grid
        idx = torch.randint(len(self.codebook), shape, device=self.codebook.device)
        return lookup(self.codebook, idx)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = value.shape[:value.dim() - 3]
        return value.new_full(shape, -math.prod(self.grid) * math.log(len(self.codebook)))


def nearest(z_e: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``argmin_k ||z_e - e_k||^2`` per cell: ``z_e: [..., D, h, w]``, codebook ``[K, D]``
    -> indices ``[..., h, w]``; expanding ``||z||^2 - 2 z.e + ||e||^2`` avoids building
    the ``[..., K, D]`` differences."""
    z = z_e.movedim(-3, -1)
    distance = codebook.pow(2).sum(-1) - 2 * z @ codebook.T + z.pow(2).sum(-1, keepdim=True)
    return distance.argmin(-1)


def lookup(codebook: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``e_idx``: indices ``[..., h, w]`` -> vectors ``[..., D, h, w]``."""
    return codebook[idx].movedim(-1, -3)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """``z_e + sg(z_q - z_e)``: the value of ``z_q``, the gradient of the identity on ``z_e``."""
    return z_e + (z_q - z_e).detach()


class VQVAE(Model):
    r"""VQ-VAE (van den Oord et al. 2017) with EMA codebook updates and a learnt prior.

    Generative story (``model``), for each image ``b`` in the plate ``"data"``::

        z_b ~ UniformCodes(codebook)           site "z", [D, h, w]: each cell one of K vectors
        x_b ~ Bernoulli(decoder(z_b))           site "x" (grey levels as probabilities)

    Guide (``guide``), deterministic given ``x``::

        z_e = encoder(x_b)                                   [D, h, w]
        k   = argmin_k ||z_e - e_k||^2  per cell             the nearest codes, [h, w]
        z_b ~ Delta(z_e + sg(e_k - z_e))                     site "z" (straight-through)
        factor "commitment" = beta ||z_e - sg(e_k)||^2       (eq. 3, third term)

    With the uniform prior the KL is the constant ``h w log K`` and the loss is
    ``-log p(x | z_q) + beta ||z_e - sg(e)||^2`` (+ the constant): eq. 3 of the paper
    without its codebook term, which the EMA update replaces (appendix A.1). In
    training steps (training mode, autograd on) the guide also updates the codebook:

        N_k <- gamma N_k + (1 - gamma) n_k,    m_k <- gamma m_k + (1 - gamma) sum_{i: k_i = k} z_e,i
        e_k  = m_k / ((N_k + eps) / (sum_j N_j + K eps) sum_j N_j)     (Laplace-smoothed)

    and a code unused for ``dead_after`` steps restarts at a random encoder output of
    the batch (``e_k = m_k = z_e,i``, ``N_k = 1``). ``N``, ``m``, ``e`` and the idle
    counts are buffers, so checkpoints hold them and a resume is exact.

    The prior that :meth:`generate` samples from (``prior="transformer"``) is a
    :class:`CodeTransformer` over the ``h w`` code indices, fitted alongside the VQ-VAE
    as an extra step (:meth:`extra_steps`) on each batch's codes, the gradient kept
    out of the encoder; its loss ``-log p(k)`` is logged as ``prior_loss``.

    Codes as the explore tools see them (``latent_kind = "categorical"``): one-hot
    ``[h w, K]`` rows, one per cell, raster order (:meth:`encode`, :meth:`decode`).

    :param x_shape: image shape ``(C, H, W)``.
    :param num_codes: ``K``. :param code_dim: ``D``.
    :param channels: the encoder's stride-2 convolutions; ``h = ceil(H / 2^len)``.
    :param likelihood: a key of :data:`pyro_vae.likelihoods.LIKELIHOODS` or an object.
    :param commitment: ``beta``. :param decay: ``gamma``.
    :param dead_after: steps unused before a restart (0: never).
    :param prior: ``"transformer"`` or ``"uniform"``, for :meth:`generate`.
    :param prior_width: the transformer's width. :param prior_layers: its layers.
    :param prior_alongside: fit the prior by :meth:`extra_steps` while the VQ-VAE trains.
    :param name: this instance's scope in Pyro's param store (default: unique).
    """

    config_class = VQVAEConfig
    capturable = False  # the guide updates the codebook in place
    latent_kind = "categorical"

    def __init__(self, x_shape: Sequence[int] = (1, 28, 28), num_codes: int = 128,
                 code_dim: int = 32, channels: Sequence[int] = (32, 64),
                 likelihood: Union[str, nn.Module] = "bernoulli", commitment: float = 0.25,
                 decay: float = 0.99, dead_after: int = 10, prior: str = "transformer",
                 prior_width: int = 64, prior_layers: int = 2, prior_alongside: bool = True,
                 name: Optional[str] = None):
        _check_arguments(x_shape, num_codes, code_dim, channels, commitment, decay,
                         dead_after, prior)
        super().__init__(name)
        self.x_shape = tuple(int(s) for s in x_shape)
        self.num_codes, self.code_dim = int(num_codes), int(code_dim)
        self.channels = tuple(channels)
        self.commitment, self.decay, self.dead_after = float(commitment), float(decay), dead_after
        self.prior_kind, self.prior_alongside = prior, bool(prior_alongside)
        self.grid = tuple(_halved(s, len(self.channels)) for s in self.x_shape[1:])
        self.likelihood = _part("likelihood", LIKELIHOODS, likelihood)
        self.encoder = GridEncoder(self.x_shape, self.code_dim, self.channels)
        self.decoder = GridDecoder(self.x_shape, self.code_dim, self.channels,
                                   self.likelihood.params_per_pixel)
        self.code_prior = CodeTransformer(self.num_codes, math.prod(self.grid), prior_width,
                                          prior_layers)
        codebook = torch.empty(self.num_codes, self.code_dim).uniform_(-1, 1) / self.num_codes
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.ones(self.num_codes))  # N_k, starts at 1
        self.register_buffer("ema_sum", codebook.clone())               # m_k = N_k e_k
        self.register_buffer("idle", torch.zeros(self.num_codes, dtype=torch.long))

    # ----------------------------------------------------------------- Pyro
    def prior(self, num: int = 1) -> UniformCodes:
        """p(z): every cell uniform over the codebook; batch ``[num]``, event ``[D, h, w]``."""
        return UniformCodes(self.codebook, self.grid, (num,))

    def model(self, x: Optional[torch.Tensor] = None, y=None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(x, z) = p(z) p(x | z). ``x: [B, C, H, W]`` observed, or ``None`` to draw
        ``num`` images (default 1). Returns ``x``."""
        self.register("decoder", "likelihood")
        n = batch_size_of(x, None, num)
        with pyro.plate("data", n):
            z = pyro.sample("z", self.prior(n))
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor, y=None, num: Optional[int] = None) -> torch.Tensor:
        """q(z | x) = Delta(nearest codes of encoder(x)), the commitment factor, and in
        training steps the EMA update. ``x: [B, C, H, W]``; returns ``z: [B, D, h, w]``."""
        if x is None:
            raise ValueError("x: the guide q(z | x) needs images; for the prior predictive "
                             "use Predictive(model) without a guide")
        self.register("encoder")
        with pyro.plate("data", x.shape[0]):
            z_e = self.encoder(x)
            idx = nearest(z_e.detach(), self.codebook)
            z_q = lookup(self.codebook, idx)
            if self.training and torch.is_grad_enabled():
                self.ema_update(z_e.detach(), idx)
            # +beta ||.||^2 in the guide is -beta ||.||^2 in the ELBO; reparameterised.
            pyro.factor("commitment", self.commitment * (z_e - z_q).pow(2).sum((-3, -2, -1)),
                        has_rsample=True)
            return pyro.sample("z", dist.Delta(straight_through(z_e, z_q), event_dim=3))

    # ------------------------------------------------------------ codebook
    @torch.no_grad()
    def ema_update(self, z_e: torch.Tensor, idx: torch.Tensor) -> None:
        """The EMA step of the class docstring for encoder outputs ``z_e: [B, D, h, w]``
        assigned to codes ``idx: [B, h, w]``; then the restart of dead codes."""
        flat = z_e.movedim(-3, -1).reshape(-1, self.code_dim)
        one_hot = F.one_hot(idx.reshape(-1), self.num_codes).to(flat)
        # under torch.distributed, n_k and the sums are those of the combined batch
        counts, sums = all_sum(one_hot.sum(0)), all_sum(one_hot.T @ flat)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + LAPLACE_EPS) / (total + self.num_codes * LAPLACE_EPS) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        self.idle.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_after:
            self.restart_dead(flat)

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor) -> torch.Tensor:
        """Codes idle for ``dead_after`` steps restart at random rows of ``flat: [N, D]``
        (drawn with torch's global generator, which checkpoints save; under
        torch.distributed, rank 0's rows, sent to every rank). Returns their indices."""
        dead = (self.idle >= self.dead_after).nonzero().flatten()
        if len(dead):
            rows = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
            if world_size() > 1:
                torch.distributed.broadcast(rows, src=0)
            self.codebook[dead] = rows
            self.ema_sum[dead] = rows
            self.ema_count[dead] = 1.0
            self.idle[dead] = 0
        return dead

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest codes of ``x: [B, C, H, W]``: ``[B, h w]`` long, raster order."""
        with torch.no_grad():
            return nearest(self.encoder(x), self.codebook).flatten(-2)

    @torch.no_grad()
    def code_statistics(self, x: torch.Tensor, batch_size: int = 1000) -> Dict[str, float]:
        """On images ``x``: ``perplexity`` ``exp(-sum_k p_k log p_k)`` of the code frequencies
        ``p``, ``usage`` (share of the K codes used at least once), and ``mse``, the mean
        squared error per pixel of :meth:`reconstruct`."""
        counts, squared = torch.zeros(self.num_codes), 0.0
        for batch in x.split(batch_size):
            counts += torch.bincount(self.code_indices(batch).flatten(),
                                     minlength=self.num_codes).cpu().float()
            squared += (self.reconstruct(batch) - batch).pow(2).sum().item()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"perplexity": entropy.exp().item(), "usage": (counts > 0).float().mean().item(),
                "mse": squared / x.numel()}

    # ----------------------------------------------------------- the prior
    def prior_loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """``-log p(k)`` of the codes of ``x: [B, C, H, W]`` under the learnt prior, mean
        over the batch (nats per image); the codes carry no gradient to the encoder."""
        return self.code_nll(self.code_indices(x))

    def code_nll(self, codes: torch.Tensor) -> torch.Tensor:
        """``-log p(k)`` of code grids ``codes: [B, h w]`` under the learnt prior, mean over B."""
        logits = self.code_prior(codes)
        return F.cross_entropy(logits.flatten(0, 1), codes.flatten(), reduction="sum") / len(codes)

    def fit_prior(self, x: torch.Tensor, epochs: int, batch_size: int = 128, lr: float = 1e-3,
                  seed: int = 0) -> list:
        """The second phase: the learnt prior alone, Adam on ``-log p(k)`` of the codes of
        ``x: [N, C, H, W]`` (encoded once; the VQ-VAE is left as it is), ``epochs`` passes
        in seeded random order. Returns the mean ``-log p(k)`` of each epoch (nats per image)."""
        if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 0:
            raise ValueError(f"epochs: expected an integer >= 0, got {epochs!r}")
        training = self.training
        self.eval()
        device = self.codebook.device
        codes = torch.cat([self.code_indices(b.to(device)) for b in x.split(1000)])
        optimizer = torch.optim.Adam(self.code_prior.parameters(), lr=lr)
        generator, losses = torch.Generator().manual_seed(seed), []
        for _ in range(int(epochs)):
            total = 0.0
            for idx in torch.randperm(len(codes), generator=generator).split(batch_size):
                optimizer.zero_grad(set_to_none=True)
                loss = self.code_nll(codes[idx.to(codes.device)])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            losses.append(total / len(codes))
        self.train(training)
        return losses

    def svi_parameters(self):
        return ((k, v) for k, v in self.named_parameters() if not k.startswith("code_prior."))

    def extra_steps(self, optimizer: Callable) -> Dict[str, Any]:
        """The learnt prior's step after each SVI step (``prior_loss`` is logged); none
        with ``prior="uniform"``."""
        if self.prior_kind == "uniform" or not self.prior_alongside:
            return {}
        if world_size() > 1:
            raise ValueError("prior_alongside: the learnt prior's step alongside training "
                             "runs in one process; under torchrun pass --prior-alongside "
                             "false (the prior is then fitted after the last epoch, "
                             "--prior-epochs)")
        return {"prior": OptimizerStep(self.code_prior.parameters(), self.prior_loss, optimizer)}

    def callbacks(self, config, x_train: torch.Tensor) -> List[Callback]:
        """The second phase, :class:`PriorPhase`, after the last epoch of a run with
        ``config.prior_epochs > 0`` and the learnt prior."""
        epochs = getattr(config, "prior_epochs", 0)
        if self.prior_kind == "uniform" or not epochs:
            return []
        if config.early_stopping:
            raise ValueError("early_stopping: the prior's second phase runs after the last "
                             "epoch, and an early stop keeps an earlier one; pass "
                             "--prior-epochs 0 with early stopping")
        return [PriorPhase(self, x_train, epochs, config.batch_size, config.lr, config.seed)]

    def metrics(self, x: torch.Tensor) -> Dict[str, float]:
        """:meth:`code_statistics` of ``x``, named for a report: ``codebook_usage``,
        ``codebook_perplexity`` and ``mse``."""
        stats = self.code_statistics(x)
        return {"codebook_usage": stats["usage"], "codebook_perplexity": stats["perplexity"],
                "mse": stats["mse"]}

    def sample_codes(self, num: int, prior: Optional[str] = None) -> torch.Tensor:
        """``num`` code grids ``[num, h w]`` from ``prior`` (default: this model's)."""
        prior = self.prior_kind if prior is None else prior
        if prior not in PRIORS:
            raise ValueError(f"prior: expected one of {list(PRIORS)}, got {prior!r}")
        if prior == "uniform":
            return torch.randint(self.num_codes, (num, math.prod(self.grid)),
                                 device=self.codebook.device)
        return self.code_prior.sample(num)

    # ----------------------------------------------------------- utilities
    @property
    def latent_shape(self) -> Tuple[int, int]:
        """``(h w, K)``: a code is one one-hot row of K per cell of the grid."""
        return (math.prod(self.grid), self.num_codes)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The nearest codes of ``x: [B, C, H, W]`` as one-hot rows ``[B, h w, K]``."""
        return F.one_hot(self.code_indices(x), self.num_codes).to(x)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Mean image of p(x | z) for one-hot codes ``z: [..., h w, K]`` -> ``[..., C, H, W]``."""
        vectors = (z @ self.codebook).movedim(-1, -2).unflatten(-1, self.grid)
        return self.likelihood.mean(self.decoder(vectors))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Mean of p(x | z_q(x)); same shape as ``x``."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def generate(self, num: int, y=None, prior: Optional[str] = None) -> torch.Tensor:
        """``num`` images decoded from code grids of ``prior`` (default: this model's):
        ``[num, C, H, W]``."""
        return self.decode(self.latent_draws(num, prior=prior))

    def latent_draws(self, num: int, y=None, prior: Optional[str] = None) -> torch.Tensor:
        """``num`` codes of ``prior`` (default: this model's): ``[num, h w, K]`` one-hot."""
        codes = self.sample_codes(num, prior)
        return F.one_hot(codes, self.num_codes).to(self.codebook)

    @torch.no_grad()
    def traverse_categorical(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Cell ``n`` of each image's code set to each of the ``K`` codes in turn, all else
        kept, decoded: ``x: [B, C, H, W]`` -> ``[B, K, C, H, W]``."""
        if not 0 <= n < self.latent_shape[0]:
            raise ValueError(f"n: expected a cell in [0, {self.latent_shape[0]}), got {n!r}")
        return explore.traverse_categorical(self, self.encode(x), [n])[:, 0]

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x`` fits this model."""
        super().check_data(x, name)
        self.likelihood.check(x, name)


class PriorPhase(Callback):
    """After the last epoch, the learnt prior alone on the fixed codes of ``x_train``
    (:meth:`VQVAE.fit_prior`, ``epochs`` passes, seeded), before the checkpoint of that
    epoch is written: the saved run samples from the fitted prior. Adds
    ``prior_phase_loss`` (the last pass's mean ``-log p(k)``, nats per image) and
    ``prior_phase_s`` to the epoch's metrics.

    The prior's weights from before the phase are saved with the checkpoint, and a
    resumed run that trains further starts its next epoch from them, then fits the
    phase again after its new last epoch: N epochs and then M more end exactly where
    N + M epochs in one go do."""

    key = "vqvae_prior_phase"

    def __init__(self, model: VQVAE, x_train: torch.Tensor, epochs: int, batch_size: int = 128,
                 lr: float = 1e-3, seed: int = 0):
        self.model, self.x_train, self.epochs = model, x_train, int(epochs)
        self.batch_size, self.lr, self.seed = batch_size, lr, seed

    def on_epoch_start(self, state, epoch):
        before = state.extra.pop(self.key, None)
        if before is not None:  # training goes on after a finished run's phase
            self.model.code_prior.load_state_dict(before)

    def on_epoch_end(self, state, metrics):
        if metrics["epoch"] < state.epochs:
            return
        state.extra[self.key] = {k: v.detach().clone()
                                 for k, v in self.model.code_prior.state_dict().items()}
        start = time.perf_counter()
        losses = self.model.fit_prior(self.x_train, self.epochs, self.batch_size, self.lr,
                                      self.seed)
        metrics["prior_phase_loss"] = losses[-1]
        metrics["prior_phase_s"] = time.perf_counter() - start


def _halved(size: int, layers: int) -> int:
    for _ in range(layers):
        size = (size + 1) // 2
    return size


def _check_arguments(x_shape, num_codes, code_dim, channels, commitment, decay, dead_after,
                     prior) -> None:
    """Refuse constructor arguments that cannot work, naming the first."""
    if len(tuple(x_shape)) != 3 or min(x_shape) < 1:
        raise ValueError(f"x_shape: expected (C, H, W) of positive sizes, got {tuple(x_shape)}")
    for name, value, least in (("num_codes", num_codes, 2), ("code_dim", code_dim, 1),
                               ("dead_after", dead_after, 0)):
        if isinstance(value, bool) or int(value) != value or value < least:
            raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    if len(tuple(channels)) == 0 or any(int(c) != c or c < 1 for c in channels):
        raise ValueError(f"channels: expected one or more positive widths, got {tuple(channels)}")
    if not commitment >= 0:
        raise ValueError(f"commitment: expected beta >= 0, got {commitment!r}")
    if not 0 <= decay < 1:
        raise ValueError(f"decay: expected 0 <= gamma < 1, got {decay!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior: expected one of {list(PRIORS)}, got {prior!r}")

"""Shared test fixtures that are not pytest fixtures: a model with closed forms, and a
callback that keeps what the trainer ran."""

import math

import pyro
import pyro.distributions as dist
import torch

from pyro_vae.training import Callback


class PPCA:
    r"""Probabilistic PCA (Tipping & Bishop 1999) as a Pyro model/guide pair.

        z_n ~ N(0, I_k),   x_n ~ N(W z_n + mu, sigma^2 I_d)      (model)
        z_n ~ N(m(x_n) + shift L 1, c^2 Sigma)                    (guide)

    with the exact posterior N(m(x), Sigma), Sigma = (I + W^T W / sigma^2)^-1 = L L^T,
    m(x) = Sigma W^T (x - mu) / sigma^2, shifted by ``shift`` posterior standard
    deviations and widened by ``c`` so that the guide is imperfect.
    log p(x) = log N(x; mu, W W^T + sigma^2 I) and the guide's ELBO have closed forms.
    """

    def __init__(self, d=5, k=2, sigma=0.5, shift=0.5, c=1.3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(d, k, generator=g, dtype=torch.float64)
        self.mu = torch.randn(d, generator=g, dtype=torch.float64)
        self.sigma, self.shift, self.c, self.k = sigma, shift, c, k
        self.post_cov = torch.linalg.inv(torch.eye(k, dtype=torch.float64)
                                         + self.w.T @ self.w / sigma**2)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.k, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.w.T + self.mu, self.sigma).to_event(1), obs=x)

    def q_params(self, x):
        m = (x - self.mu) @ self.w @ self.post_cov / self.sigma**2
        shift = self.shift * torch.linalg.cholesky(self.post_cov).sum(-1)
        return m + shift, self.c**2 * self.post_cov

    def guide(self, x):
        loc, cov = self.q_params(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, covariance_matrix=cov))

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.k, generator=g, dtype=torch.float64)
        return z @ self.w.T + self.mu + self.sigma * torch.randn(n, len(self.mu), generator=g,
                                                                 dtype=torch.float64)

    def log_px(self, x):
        cov = self.w @ self.w.T + self.sigma**2 * torch.eye(len(self.mu), dtype=torch.float64)
        return dist.MultivariateNormal(self.mu, covariance_matrix=cov).log_prob(x)

    def elbo(self, x):
        m, s = self.q_params(x)
        recon = (dist.Normal(m @ self.w.T + self.mu, self.sigma).log_prob(x).sum(-1)
                 - torch.trace(self.w @ s @ self.w.T) / (2 * self.sigma**2))
        log_prior = dist.Normal(0.0, 1.0).log_prob(m).sum(-1) - torch.trace(s) / 2
        entropy = 0.5 * torch.logdet(2 * math.pi * math.e * s)
        return recon + log_prior + entropy


class StepSeen(Callback):
    """Keeps the step the trainer runs."""

    def on_fit_start(self, state, probe):
        self.step = state.step

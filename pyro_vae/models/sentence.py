"""The sentence VAE of Bowman et al. (2016), as a Pyro model and guide over padded sentences."""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.infer import TraceMeanField_ELBO

from ..checks import one_of
from ..config import TrainConfig, option
from ..free_bits import (GROUPS as FREE_BITS_GROUPS, check_elbo as check_free_bits_elbo,
                         check_free_bits, guide_factor as free_bits_factor)
from ..schedules import SCHEDULES
from ..steps import NonFiniteStep, OptimizerStep
from ..text import decoding
from ..text.batches import bucket_batches
from ..text.distribution import RNN_ROWS, SentenceDistribution
from ..text.nets import CELLS, EMBED_STD, SOFTMAXES, SentenceDecoder, SentenceEncoder
from ..text.vocab import Vocabulary, lengths
from ..training.callbacks import Callback
from .base import Model, batch_size_of

DECODERS = ("greedy", "sample", "beam")


@dataclass
class SentenceConfig(TrainConfig):
    """A run of :class:`SentenceVAE` on text (``--data ptb``, ``toy`` or a text file)."""

    data: str = option("ptb", "sentences: ptb (the Penn Treebank), toy (600 generated "
                       "sentences) or a text file, one sentence a line", "data",
                       flags=("--dataset",))
    max_vocab: int = option(None, "words kept, the most frequent of the training split "
                            "(<pad> <unk> <bos> <eos> included); default: all (PTB: 10,002)",
                            "data", minimum=5)
    vocab: str = option(None, "a vocabulary file, one word a line; default: built from the "
                        "training split (each run writes OUT/vocab.txt)", "data")
    z_dim: int = option(32, "latent dimension", minimum=1)
    embed_dim: int = option(256, "word embedding width", minimum=1)
    embed_std: float = option(EMBED_STD, "standard deviation of the word embeddings at "
                              "initialisation (torch's default: 1)", positive=True)
    hidden_size: int = option(256, "RNN units of the encoder and the decoder", minimum=1)
    cell: str = option("gru", "RNN cell: gru or lstm", choices=lambda: CELLS)
    bidirectional: bool = option(False, "the encoder reads each sentence both ways")
    z_every_step: bool = option(True, "the decoder reads z at every step, beside the "
                                "previous word (else only through its initial state)")
    word_dropout: float = option(0.0, "share of the decoder's input words replaced by <unk> "
                                 "in training (Bowman et al. 2016); 0: none")
    dropout: float = option(0.0, "dropout rate on the decoder's input embeddings and "
                            "outputs in training (Zaremba et al. 2014); 0: none")
    tie_embeddings: bool = option(False, "the decoder's softmax weights are its input "
                                  "embeddings (Press & Wolf 2017)")
    softmax: str = option("full", "the decoder's softmax layer: full, or adaptive (Grave et "
                          "al. 2017: frequent words in a head, rarer ones in clusters behind "
                          "narrower projections; exact probabilities, a fraction of the cost)",
                          choices=lambda: SOFTMAXES)
    cutoffs: Tuple[int, ...] = option(None, "word ranks where the adaptive softmax's "
                                      "clusters begin, e.g. 1000,4000; default: a tenth and "
                                      "two fifths of the vocabulary")
    free_bits: float = option(0.0, "free bits (Kingma et al. 2016): nats of batch-mean KL "
                              "per dimension (or the whole code, --free-bits-per level) "
                              "that cost as much as none; 0: off")
    free_bits_per: str = option("dimension", "what --free-bits counts per: dimension or "
                                "level (the whole code)", choices=lambda: FREE_BITS_GROUPS)
    beta: float = option(1.0, "weight of the KL term", positive=True)
    warmup: str = option("none", "KL warm-up schedule: none, linear or cyclical",
                         choices=lambda: SCHEDULES)
    warmup_epochs: float = option(10.0, "epochs of the linear warm-up ramp, or the period "
                                  "of a cyclical one (ramp over its first half)", positive=True)
    language_model: bool = option(False, "the decoder alone, reading no code: the RNN "
                                  "language model that the VAE is compared with")
    max_len: int = option(50, "longest sentence decoded from a code (tokens)", minimum=1)
    aggressive_steps: int = option(0, "aggressive encoder training (He et al. 2019): "
                                   "encoder-only steps after each SVI step, on its batch; "
                                   "0: off", minimum=0)
    aggressive_epochs: int = option(5, "epochs of the aggressive phase (with "
                                    "--aggressive-steps)", minimum=0)


class SentenceVAE(Model):
    r"""A VAE of sentences with recurrent networks (Bowman et al. 2016).

    Generative story (``model``), for each sentence ``n`` in the plate ``"data"``::

        z_n ~ N(0, I)                                   site "z"
        x_n ~ prod_t p(x_nt | x_n,<t, z_n)              site "x"  (one masked site)

    where the decoder (:class:`~pyro_vae.text.nets.SentenceDecoder`) reads ``<bos>``
    and the previous words, and ``z`` through its initial state (and every step). The
    sentence ``x_n`` is its words, ``<eos>``, then ``<pad>``; padding is masked out of
    ``log p(x | z)`` (:mod:`pyro_vae.text.distribution`), so a batch padded to any
    width has the same ELBO. Guide (``guide``)::

        z_n ~ N(mu(x_n), diag sigma(x_n)^2)             site "z"  (RNN encoder)

    Against posterior collapse (KL -> 0 while the decoder models the text alone):

    - ``beta`` on ``"z"`` in model and guide, driven by a KL warm-up schedule;
    - ``word_dropout``: training inputs of the decoder replaced by ``<unk>``;
    - ``free_bits = lambda``: the objective ``E_q log p(x|z) - sum_d max(lambda, KL_d)``
      (``free_bits_per="dimension"``, the default; ``"level"``: one group, the whole code)
      with ``KL_d`` the batch mean of dimension ``d``'s KL (Kingma et al. 2016, eq. 15):
      a guide factor (:func:`pyro_vae.free_bits.guide_factor`) charges ``lambda - KL_d``
      for each dimension below ``lambda``, so its KL gradient vanishes (exactly under the
      default ``TraceMeanField_ELBO``, whose KL is the closed form used here; in
      expectation under ``Trace_ELBO``).

    - ``aggressive_steps = k``: after each SVI step, ``k`` more steps of the encoder
      alone on the same batch (:class:`AggressiveEncoder`), while ``aggressive`` is on
      (:class:`AggressivePhase` turns it off after its epochs): the inference network
      catches up with the decoder before the decoder learns to ignore ``z`` (He et al.
      2019, algorithm 1, with the batch at hand in place of fresh ones).

    ``language_model=True`` drops the code: the decoder reads no ``z`` and the guide is
    the prior, so KL = 0 and every bound equals ``log p(x)`` of an RNN language model
    with the same layers, the reference a sentence VAE is measured against.

    :param vocab: a :class:`~pyro_vae.text.vocab.Vocabulary`, its words, or its size.
    :param z_dim: latent dimension.
    :param embed_dim: word embedding width (encoder and decoder each have one).
    :param hidden_size: RNN units.
    :param cell: ``"gru"`` or ``"lstm"``.
    :param bidirectional: the encoder's RNN reads both ways.
    :param z_every_step: the decoder reads ``z`` beside every input word.
    :param word_dropout: rate of :func:`~pyro_vae.text.batches.word_dropout` in training.
    :param dropout: dropout rate on the decoder's embeddings and RNN outputs in training.
    :param tie_embeddings: the decoder's softmax weights are its input embeddings.
    :param softmax: ``"full"`` or ``"adaptive"`` (:class:`~pyro_vae.text.nets.SentenceDecoder`).
    :param cutoffs: the adaptive softmax's cluster boundaries (word ranks), or ``None``.
    :param free_bits: nats per dimension (or per code), 0 for none.
    :param free_bits_per: ``"dimension"`` or ``"level"`` (:mod:`pyro_vae.free_bits`).
    :param beta: weight of the KL term.
    :param language_model: no code (see above).
    :param max_len: the longest sentence decoded from a code.
    :param aggressive_steps: encoder-only steps after each SVI step, 0 for none.
    :param embed_std: the embeddings' standard deviation at initialisation
        (:func:`~pyro_vae.text.nets.embedding`).
    :param encoder: an ``nn.Module`` ``x: [B, T] -> [B, 2 * z_dim]`` (location, log scale).
    :param decoder: a :class:`~pyro_vae.text.nets.SentenceDecoder` or a module with its
        ``vocab_size``, ``hidden``, ``score``, ``logits`` and ``forward``.
    """

    data_kind = "text"
    capturable = False  # sentences of changing length (a new shape per bucket)
    elbo = "TraceMeanField_ELBO"  # the closed-form KL: lower variance, exact free bits
    config_class = SentenceConfig

    def __init__(self, vocab: Union[Vocabulary, Sequence[str], int] = 10000,
                 z_dim: int = 32, embed_dim: int = 256, hidden_size: int = 256,
                 cell: str = "gru", bidirectional: bool = False, z_every_step: bool = True,
                 word_dropout: float = 0.0, dropout: float = 0.0,
                 tie_embeddings: bool = False, softmax: str = "full",
                 cutoffs: Optional[Sequence[int]] = None, free_bits: float = 0.0,
                 free_bits_per: str = "dimension", beta: float = 1.0,
                 language_model: bool = False, max_len: int = 50, aggressive_steps: int = 0,
                 embed_std: float = EMBED_STD, encoder: Optional[nn.Module] = None,
                 decoder: Optional[nn.Module] = None, name: Optional[str] = None):
        if isinstance(vocab, int) and not isinstance(vocab, bool):
            if vocab <= 4:
                raise ValueError(f"vocab: expected more than 4 words, got {vocab}")
            self_vocab, size = None, int(vocab)
        else:
            self_vocab = vocab if isinstance(vocab, Vocabulary) else Vocabulary(vocab)
            size = len(self_vocab)
        for arg, value in (("z_dim", z_dim), ("embed_dim", embed_dim),
                           ("hidden_size", hidden_size), ("max_len", max_len)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{arg}: expected a positive integer, got {value!r}")
        if isinstance(aggressive_steps, bool) or int(aggressive_steps) != aggressive_steps \
                or aggressive_steps < 0:
            raise ValueError(f"aggressive_steps: expected a non-negative integer, got "
                             f"{aggressive_steps!r}")
        if language_model and aggressive_steps:
            raise ValueError("aggressive_steps: the language model has no encoder to train")
        one_of("cell", cell, CELLS)
        if not 0 <= word_dropout <= 1:
            raise ValueError(f"word_dropout: expected a rate in [0, 1], got {word_dropout!r}")
        check_free_bits(free_bits, free_bits_per)
        if not beta > 0:
            raise ValueError(f"beta: expected a positive number, got {beta!r}")
        super().__init__(name)
        self.vocab, self.vocab_size, self.z_dim = self_vocab, size, int(z_dim)
        self.free_bits_per = free_bits_per
        self.word_dropout, self.free_bits, self.beta = float(word_dropout), float(free_bits), \
            float(beta)
        self.language_model, self.max_len = bool(language_model), int(max_len)
        self.aggressive_steps = int(aggressive_steps)
        self.aggressive = self.aggressive_steps > 0  # AggressivePhase turns it off
        self.decoder = decoder or SentenceDecoder(size, self.z_dim, embed_dim, hidden_size,
                                                  cell, z_every_step,
                                                  use_z=not language_model, dropout=dropout,
                                                  tie_embeddings=tie_embeddings,
                                                  softmax=softmax, cutoffs=cutoffs,
                                                  embed_std=embed_std)
        self.encoder = None if language_model else encoder or SentenceEncoder(
            size, 2 * self.z_dim, embed_dim, hidden_size, cell, bidirectional, embed_std)

    # ------------------------------------------------------------ distributions
    def prior(self, num: int) -> dist.Distribution:
        """p(z) = N(0, I) for ``num`` sentences: batch ``[num]``, event ``[z_dim]``."""
        loc = torch.zeros(num, self.z_dim, device=self.device)
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)

    def posterior(self, x: torch.Tensor) -> dist.Distribution:
        """q(z | x): the encoder's Normal, or the prior for the language model."""
        if self.encoder is None:
            return self.prior(len(x))
        loc, log_scale = self._encoder_outputs(x).chunk(2, -1)
        return dist.Normal(loc, log_scale.clamp(-10, 5).exp()).to_event(1)

    def _encoder_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's outputs ``[B, 2 z_dim]`` for ``x: [B, T]``, in chunks of rows.
        Without gradients each distinct sentence is encoded once (an importance-weighted
        evaluation passes K replicas of each); a training step skips the search for
        repeats, whose data-dependent size would wait on the device."""
        rows, index = (x, None) if torch.is_grad_enabled() else \
            torch.unique(x, dim=0, return_inverse=True)
        out = torch.cat([self.encoder(chunk) for chunk in rows.split(RNN_ROWS)])
        return out if index is None else out[index]

    def likelihood(self, z: torch.Tensor, length: int) -> SentenceDistribution:
        """p(x | z) over sentences of ``length`` tokens (word dropout in training steps)."""
        training = self.training and torch.is_grad_enabled()
        return SentenceDistribution(self.decoder, z, length,
                                    self.word_dropout if training else 0.0)

    # ---------------------------------------------------------------- Pyro
    def model(self, x: Optional[torch.Tensor] = None, y=None,
              num: Optional[int] = None) -> torch.Tensor:
        """p(x, z) = p(z) p(x | z). ``x: [B, T]`` observed, or ``None`` to draw ``num``
        sentences (default 1) of at most ``max_len`` tokens. Returns ``x``."""
        self.register("decoder")
        x = None if x is None else trim(x)
        n = batch_size_of(x, None, num)
        with pyro.plate("data", n):
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", self.prior(n))
            length = self.max_len if x is None else x.shape[1]
            return pyro.sample("x", self.likelihood(z, length), obs=x)

    def guide(self, x: torch.Tensor, y=None, num: Optional[int] = None) -> torch.Tensor:
        """q(z | x), and the free-bits factor in training steps. Returns ``z``."""
        if x is None:
            raise ValueError("x: the guide q(z | x) needs sentences; for the prior "
                             "predictive use Predictive(model) without a guide")
        if self.encoder is not None:
            self.register("encoder")
        x = trim(x)
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.beta):
                q = self.posterior(x)
                z = pyro.sample("z", q)
                if self.free_bits and self.training and torch.is_grad_enabled():
                    free_bits_factor(q, self.prior(len(x)), z, self.free_bits,
                                     self.free_bits_per)
        return z

    # ------------------------------------------------------------ utilities
    def check_elbo(self, elbo) -> None:
        """Free bits correct the KL term, which the importance-weighted bound has not."""
        check_free_bits_elbo(self.free_bits, elbo)

    @property
    def device(self) -> torch.device:
        """Where the decoder's parameters are."""
        return next(self.decoder.parameters()).device

    @property
    def latent_shape(self) -> Tuple[int]:
        return (self.z_dim,)

    @property
    def x_shape(self) -> Tuple[int]:
        """``(max_len,)``: the width of the sentences :meth:`model` draws (tools that
        build an example batch as ``torch.zeros(2, *x_shape)`` get two empty sentences)."""
        return (self.max_len,)

    def batching(self, batch_size: int):
        """Batches of sentences of similar length
        (:func:`~pyro_vae.text.batches.bucket_batches`)."""
        return bucket_batches(batch_size)

    def extra_steps(self, optimizer: Callable) -> Dict[str, Any]:
        """``{"encoder": AggressiveEncoder}`` with ``aggressive_steps``, else none."""
        if not self.aggressive_steps:
            return {}
        return {"encoder": AggressiveEncoder(self, optimizer, self.aggressive_steps)}

    def callbacks(self, config: TrainConfig, x_train: torch.Tensor) -> List[Any]:
        """:class:`AggressivePhase` for ``--aggressive-epochs`` when the encoder trains
        aggressively."""
        if not self.aggressive_steps:
            return []
        return [AggressivePhase(self, config.aggressive_epochs)]

    def metrics(self, x: torch.Tensor) -> dict:
        """``tokens_per_sentence``: words and ``<eos>`` per sentence of ``x``, the
        denominator of the perplexity."""
        return {"tokens_per_sentence": lengths(x).double().mean().item()}

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """Posterior means ``[B, z_dim]`` of sentences ``x: [B, T]``."""
        return self.posterior(trim(x)).mean

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None, method: str = "greedy",
               temperature: float = 1.0, width: int = 5, top_p: float = 1.0,
               no_repeat_ngram: int = 0) -> torch.Tensor:
        """Sentences ``[B, T]`` decoded from ``z: [B, z_dim]`` by ``method``: ``greedy``,
        ``sample`` (at ``temperature``, from the nucleus ``top_p``) or ``beam`` (of
        ``width``); with ``no_repeat_ngram = n`` no n-gram occurs twice in a sentence
        (:mod:`pyro_vae.text.decoding`)."""
        if method not in DECODERS:
            raise ValueError(f"decode: expected one of {list(DECODERS)}, got {method!r}")
        if method == "greedy":
            return decoding.greedy(self.decoder, z, self.max_len, no_repeat_ngram)
        if method == "sample":
            return decoding.sample(self.decoder, z, self.max_len, temperature,
                                   top_p=top_p, no_repeat_ngram=no_repeat_ngram)
        return decoding.beam_search(self.decoder, z, width, self.max_len, no_repeat_ngram)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None, **decode) -> torch.Tensor:
        """Sentences decoded from the posterior means of ``x``."""
        return self.decode(self.encode(x), **decode)

    @torch.no_grad()
    def generate(self, num: int, y=None, **decode) -> torch.Tensor:
        """``num`` sentences decoded from prior draws (greedy unless ``decode`` says)."""
        return self.decode(self.prior(num).sample(), **decode)

    def sentences(self, x: torch.Tensor) -> List[str]:
        """Rows of indices as text (indices themselves without a vocabulary)."""
        if self.vocab is None:
            return [" ".join(str(int(i)) for i in row if i > 0) for row in x]
        return [self.vocab.decode(row.tolist()) for row in x]

    def tensor(self, sentences: Sequence[str]) -> torch.Tensor:
        """Sentences (words split on white space) as padded indices ``[N, T]``."""
        if self.vocab is None:
            raise ValueError("vocab: this model has no vocabulary; build it with one")
        return self.vocab.tensor([s.split() for s in sentences]).to(self.device)

    # ----------------------------------------------------------------- data
    def prepare_data(self, x: torch.Tensor, name: str = "data") -> torch.Tensor:
        """``x`` as int64 indices, checked (:meth:`check_data`)."""
        if torch.is_tensor(x) and not (x.is_floating_point() or x.is_complex()
                                       or x.dtype == torch.bool):
            x = x.long()
        self.check_data(x, name)
        return x

    def check_data(self, x: torch.Tensor, name: str = "data") -> None:
        """Raise naming ``name`` unless ``x`` is ``[N, T]`` int64 indices into the
        vocabulary, each row its tokens then ``<pad>`` only."""
        if not torch.is_tensor(x) or x.dtype != torch.int64:
            got = x.dtype if torch.is_tensor(x) else type(x).__name__
            raise TypeError(f"{name}: expected int64 word indices [N, T], got {got}")
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: expected a non-empty [N, T] tensor of word indices, "
                             f"got shape {list(x.shape)}")
        if int(x.min()) < 0 or int(x.max()) >= self.vocab_size:
            raise ValueError(f"{name}: expected indices in [0, {self.vocab_size}), got "
                             f"{int(x.min())}..{int(x.max())}")
        real = x != Vocabulary.pad
        if (real[:, 1:] & ~real[:, :-1]).any():
            raise ValueError(f"{name}: <pad> (0) must only follow a sentence's tokens")


def trim(x: torch.Tensor) -> torch.Tensor:
    """``x: [B, T]`` as int64 indices, without the columns that are ``<pad>`` in every row."""
    x = x.long()
    width = max(int(lengths(x).max()), 1)
    return x if width == x.shape[1] else x[:, :width]


class AggressiveEncoder(OptimizerStep):
    """``steps`` updates of the encoder alone on a batch, by its own optimiser, while
    ``vae.aggressive`` is on; returns the last negative ELBO per sentence (0 when off).

    Gradients are taken with ``torch.autograd.grad`` for the encoder's parameters only,
    so the decoder's ``.grad`` stays as the SVI step left it.
    """

    def __init__(self, vae: SentenceVAE, optimizer: Callable, steps: int):
        elbo = TraceMeanField_ELBO()
        super().__init__(vae.encoder.parameters(), lambda *batch: elbo.differentiable_loss(
            vae.model, vae.guide, *batch) / len(batch[0]), optimizer)
        self.vae, self.steps = vae, int(steps)

    def __call__(self, *batch) -> float:
        value = 0.0
        for _ in range(self.steps if self.vae.aggressive else 0):
            loss = self.loss_fn(*batch)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
            value = loss.item()
            if not math.isfinite(value) or not all(
                    g is None or torch.isfinite(g).all() for g in grads):
                raise NonFiniteStep(f"aggressive encoder step: loss or gradients are not "
                                    f"finite ({value:.6g})")
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optimizer.step()
            for p in self.params:
                p.grad = None
        return value


class AggressivePhase(Callback):
    """``vae.aggressive`` on for the first ``epochs`` epochs, off after (He et al. 2019
    stop when the mutual information stops rising; a fixed phase is simpler to reproduce)."""

    def __init__(self, vae: SentenceVAE, epochs: int):
        self.vae, self.epochs = vae, int(epochs)

    def on_epoch_start(self, state, epoch):
        self.vae.aggressive = epoch <= self.epochs

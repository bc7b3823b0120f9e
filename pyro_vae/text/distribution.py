"""p(x | z) of a sentence: an autoregressive decoder scored as one masked site.

``log p(x | z) = sum_t m_t log p(x_t | x_<t, z)``, ``m_t = [x_t != <pad>]``: each
sentence's words and its ``<eos>`` count, padding does not, so a batch padded to any
width has the same log-probability.
"""

from typing import Optional

import torch
from torch.distributions import constraints
from torch.nn import functional as F

from pyro.distributions import TorchDistribution

from .batches import word_dropout
from .decoding import sample as ancestral_sample
from .nets import SentenceDecoder
from .vocab import Vocabulary

# Sentences run through the decoder at a time, and of those, rows projected onto the
# vocabulary at a time: an evaluation over 10,000 replicas (iw_log_likelihood) then
# holds [512, T, H] states and [64, T, V] logits, not [10000, T, V].
RNN_ROWS, LOGIT_ROWS = 512, 64


def decoder_inputs(x: torch.Tensor) -> torch.Tensor:
    """``<bos>`` then ``x`` shifted right by one: what the decoder reads to predict ``x``."""
    bos = torch.full_like(x[:, :1], Vocabulary.bos)
    return torch.cat([bos, x[:, :-1]], 1)


def token_log_probs(decoder: SentenceDecoder, x: torch.Tensor, z: torch.Tensor,
                    inputs: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``log p(x_t | inputs_<=t, z)`` for each token of ``x: [B, T]``, 0 at ``<pad>``:
    ``[B, T]``. ``inputs`` default to :func:`decoder_inputs` of ``x`` (teacher forcing)."""
    inputs = decoder_inputs(x) if inputs is None else inputs
    rows = []
    for x_c, in_c, z_c in zip(x.split(RNN_ROWS), inputs.split(RNN_ROWS), z.split(RNN_ROWS)):
        h, _ = decoder.hidden(in_c, z_c)
        rows += [decoder.score(h_l, x_l)
                 for h_l, x_l in zip(h.split(LOGIT_ROWS), x_c.split(LOGIT_ROWS))]
    return torch.cat(rows)


class SentenceDistribution(TorchDistribution):
    """Sentences ``[B, length]`` given codes ``z: [B, D]``: batch ``[B]``, event ``[length]``.

    ``log_prob`` is the teacher-forced sum above (with ``word_dropout``, the decoder's
    inputs are corrupted first: a training objective, not p(x | z)); ``sample`` decodes
    ancestrally at ``temperature``, padded to ``length``.
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, decoder: SentenceDecoder, z: torch.Tensor, length: int,
                 word_dropout: float = 0.0, temperature: float = 1.0, validate_args=None):
        self.decoder, self.z, self.length = decoder, z, int(length)
        self.word_dropout, self.temperature = word_dropout, temperature
        self.vocab_size = decoder.vocab_size
        super().__init__(z.shape[:-1], torch.Size([self.length]), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.vocab_size - 1), 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        inputs = word_dropout(decoder_inputs(value), self.word_dropout)
        return token_log_probs(self.decoder, value, self.z, inputs).sum(-1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if sample_shape != torch.Size():
            raise NotImplementedError("SentenceDistribution draws one sentence per code; "
                                      "repeat z for more")
        x = ancestral_sample(self.decoder, self.z, self.length, self.temperature)
        return F.pad(x, (0, self.length - x.shape[1]), value=Vocabulary.pad)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise NotImplementedError("SentenceDistribution does not broadcast its codes")
        return self

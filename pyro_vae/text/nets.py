"""Recurrent networks of the sentence VAE: plain ``torch.nn`` modules, no Pyro calls.

The encoder maps a padded batch of sentences to the guide's parameters; the decoder
maps previous tokens and a code ``z`` to each next token's logits. Shapes: ``B``
sentences, ``T`` tokens, ``V`` words, ``E`` embedding width, ``H`` hidden units.
"""

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from ..checks import one_of
from .vocab import Vocabulary, lengths

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
SOFTMAXES = ("full", "adaptive")
State = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]
# <pad> and <bos> are never a next token: their logits are -inf, so no mass goes to them
NEVER_NEXT = (Vocabulary.pad, Vocabulary.bos)


class NextWordLinear(nn.Linear):
    """``nn.Linear`` to next-word logits whose bias is ``-inf`` at :data:`NEVER_NEXT`."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.register_buffer("never", torch.tensor(NEVER_NEXT), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight, self.bias.index_fill(0, self.never, float("-inf")))


EMBED_STD = 0.2  # see embedding()


def embedding(vocab_size: int, embed_dim: int, std: float = EMBED_STD) -> nn.Embedding:
    """A ``V x E`` word embedding drawn from ``N(0, std^2)``, its ``<pad>`` row 0.

    ``torch.nn.Embedding`` draws from ``N(0, 1)``. Adam moves every weight by about its
    learning rate a step whatever the weight's scale, so at 1e-3 the words a batch rarely
    holds keep most of a unit-scale random vector for thousands of steps, noise that the
    RNN reads as input; a smaller start lets what is learnt dominate sooner. On PTB
    (docs/text.md, "Where the embeddings start") 0.2 and 0.3 did best of 0.01 to 1.
    """
    if not std > 0:
        raise ValueError(f"embed_std: expected a positive number, got {std!r}")
    embed = nn.Embedding(vocab_size, embed_dim, padding_idx=Vocabulary.pad)
    with torch.no_grad():
        embed.weight.normal_(0.0, std)
        embed.weight[Vocabulary.pad] = 0.0
    return embed


def default_cutoffs(vocab_size: int) -> Tuple[int, ...]:
    """The adaptive softmax's cluster boundaries for ``vocab_size`` frequency-ranked
    words: the head holds the first tenth (at least 5 words), one cluster the next three
    tenths, one the rest (PTB's 10,002 words: 1000 and 4000)."""
    first = max(vocab_size // 10, 5)
    return tuple(c for c in (first, max(vocab_size * 2 // 5, first + 1)) if c < vocab_size - 1)


def check_cutoffs(cutoffs: Sequence[int], vocab_size: int) -> Tuple[int, ...]:
    """``cutoffs`` as a tuple, or a ValueError unless increasing within ``(4, V - 1)``."""
    cutoffs = tuple(int(c) for c in cutoffs)
    if not cutoffs or list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] <= 4 \
            or cutoffs[-1] >= vocab_size - 1:
        raise ValueError(f"cutoffs: expected increasing word ranks between 4 and "
                         f"{vocab_size - 1} (the vocabulary's size less one), got "
                         f"{list(cutoffs)}")
    return cutoffs


class SentenceEncoder(nn.Module):
    """``x: [B, T]`` (indices, ``<pad>`` after ``<eos>``) -> ``[B, out_dim]``.

    An embedding, then a GRU or LSTM (``bidirectional``: both directions) read over each
    sentence's real tokens only, its last hidden state(s) through a linear map. One
    direction reads the padded batch and takes each sentence's output at its last token
    (what follows cannot change it); both directions read a packed batch, so that the
    backward one starts at each sentence's own end. The embedding starts at
    ``N(0, embed_std^2)`` (:func:`embedding`).
    """

    def __init__(self, vocab_size: int, out_dim: int, embed_dim: int = 256,
                 hidden_size: int = 256, cell: str = "gru", bidirectional: bool = False,
                 embed_std: float = EMBED_STD):
        super().__init__()
        one_of("cell", cell, CELLS)
        self.embed = embedding(vocab_size, embed_dim, embed_std)
        self.rnn = CELLS[cell](embed_dim, hidden_size, batch_first=True,
                               bidirectional=bidirectional)
        self.out = nn.Linear(hidden_size * (2 if bidirectional else 1), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rnn.bidirectional:
            out, _ = self.rnn(self.embed(x))  # [B, T, H]
            last = (lengths(x).clamp(min=1) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
            return self.out(out.gather(1, last).squeeze(1))
        size = lengths(x).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embed(x), size, batch_first=True,
                                      enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # [directions, B, H]
        return self.out(torch.cat(list(h), dim=-1))


class SentenceDecoder(nn.Module):
    """Previous tokens ``[B, T]`` and ``z: [B, D]`` -> next-token logits ``[B, T, V]``.

    ``z`` sets the initial state (``tanh(W z + b)``) and, with ``z_every_step``, is
    read beside every input embedding (Bowman et al. 2016 use the first; feeding ``z``
    at every step makes it harder for the decoder to forget it). With ``use_z=False`` it
    reads no code at all: an RNN language model with the same layers. ``dropout`` is the
    rate of dropout on the input embeddings and on the RNN outputs before the softmax
    layer (Zaremba et al. 2014), applied in training steps only (``training`` and
    gradients enabled). With ``tie_embeddings`` the softmax layer's weights are the input
    embeddings (Press & Wolf 2017; Inan et al. 2017), the logits
    ``E P h + b`` with ``E: [V, embed_dim]`` and ``P`` a linear map from the RNN's
    outputs to the embedding width when the two differ (else the identity); ``E``
    starts at the softmax layer's scale. Untied, it starts at ``N(0, embed_std^2)``
    (:func:`embedding`).

    ``softmax="adaptive"`` replaces the ``H x V`` softmax layer by an adaptive one (Grave
    et al. 2017, ``nn.AdaptiveLogSoftmaxWithLoss``): the ``cutoffs[0]`` most frequent
    words and one entry per cluster share a head softmax, and the rarer words of cluster
    ``i`` a softmax behind a projection to ``H / div_value^(i+1)`` units::

        p(w | h) = p_head(w | h)                              w in the head
        p(w | h) = p_head(cluster i | h) p_i(w | h)           w in cluster i,

    a normalised distribution over all ``V`` words, whose cost for an observed word is
    the head's and, for a rare one, its cluster's. The vocabulary must be ranked by
    frequency (:meth:`Vocabulary.build` ranks it). ``cutoffs`` default to
    :func:`default_cutoffs`. Either way ``<pad>`` and ``<bos>`` get no mass.
    """

    def __init__(self, vocab_size: int, z_dim: int, embed_dim: int = 256,
                 hidden_size: int = 256, cell: str = "gru", z_every_step: bool = True,
                 use_z: bool = True, dropout: float = 0.0, tie_embeddings: bool = False,
                 softmax: str = "full", cutoffs: Optional[Sequence[int]] = None,
                 div_value: float = 2.0, embed_std: float = EMBED_STD):
        super().__init__()
        one_of("cell", cell, CELLS)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout!r}")
        one_of("softmax", softmax, SOFTMAXES)
        if softmax == "adaptive" and tie_embeddings:
            raise ValueError("tie_embeddings: the adaptive softmax has no V x E matrix to "
                             "tie to the embeddings; use softmax='full'")
        if cutoffs is not None and softmax != "adaptive":
            raise ValueError("cutoffs: only the adaptive softmax has clusters")
        self.cell, self.use_z, self.dropout = cell, use_z, float(dropout)
        self.z_every_step = z_every_step and use_z
        self.hidden_size, self.vocab_size, self.softmax = hidden_size, vocab_size, softmax
        self.embed = embedding(vocab_size, embed_dim, embed_std)
        inputs = embed_dim + (z_dim if self.z_every_step else 0)
        self.rnn = CELLS[cell](inputs, hidden_size, batch_first=True)
        self.init = nn.Linear(z_dim, hidden_size * (2 if cell == "lstm" else 1)) if use_z \
            else None
        tied = tie_embeddings and hidden_size != embed_dim
        self.project = nn.Linear(hidden_size, embed_dim, bias=False) if tied else None
        if softmax == "adaptive":
            cutoffs = check_cutoffs(default_cutoffs(vocab_size) if cutoffs is None
                                    else cutoffs, vocab_size)
            self.out = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, list(cutoffs),
                                                     div_value=div_value, head_bias=True)
            head = self.out.head
            self.out.head = NextWordLinear(head.in_features, head.out_features)
            self.out.head.load_state_dict(head.state_dict())
        else:
            self.out = NextWordLinear(embed_dim if tie_embeddings else hidden_size,
                                      vocab_size)
        if tie_embeddings:
            # the softmax layer's scale, U(-1/sqrt(E), 1/sqrt(E)), not the embedding's
            # N(0, 1), whose logits E h would start in the tens
            with torch.no_grad():
                self.embed.weight.copy_(self.out.weight)
                self.embed.weight[Vocabulary.pad] = 0.0
            self.out.weight = self.embed.weight

    def initial_state(self, z: torch.Tensor) -> State:
        """The RNN state before the first token: ``[1, B, H]`` (a pair for the LSTM)."""
        if self.init is None:
            h = z.new_zeros(1, z.shape[0], self.hidden_size * (2 if self.cell == "lstm" else 1))
        else:
            h = torch.tanh(self.init(z)).unsqueeze(0)
        return tuple(h.chunk(2, -1)) if self.cell == "lstm" else h

    def hidden(self, inputs: torch.Tensor, z: torch.Tensor,
               state: Optional[State] = None) -> Tuple[torch.Tensor, State]:
        """RNN outputs ``[B, T, H]`` over ``inputs: [B, T]`` and the state after them."""
        e = self._drop(self.embed(inputs))
        if self.z_every_step:
            e = torch.cat([e, z.unsqueeze(1).expand(-1, e.shape[1], -1)], -1)
        return self.rnn(e, self.initial_state(z) if state is None else state)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[..., V]`` of RNN outputs ``h: [..., H]`` (normalised
        log-probabilities with the adaptive softmax); ``-inf`` at ``<pad>`` and ``<bos>``."""
        h = self._features(h)
        if self.softmax == "full":
            return self.out(h)
        return self.out.log_prob(h.reshape(-1, h.shape[-1])).view(*h.shape[:-1], -1)

    def score(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log p(targets | h)``: ``[B, T]`` of RNN outputs ``h: [B, T, H]``, 0 where the
        target is ``<pad>``. The adaptive softmax scores only the real tokens, each in
        its head and (for a rare word) its one cluster."""
        if self.softmax == "full":
            return -F.cross_entropy(self.logits(h).transpose(1, 2), targets,
                                    reduction="none", ignore_index=Vocabulary.pad)
        real = targets != Vocabulary.pad
        out = h.new_zeros(targets.shape)
        out[real] = self.out(self._features(h[real]), targets[real]).output
        return out

    def _features(self, h: torch.Tensor) -> torch.Tensor:
        h = self._drop(h)
        return h if self.project is None else self.project(h)

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        training = self.training and torch.is_grad_enabled()
        return F.dropout(h, self.dropout, training) if self.dropout and training else h

    def forward(self, inputs: torch.Tensor, z: torch.Tensor,
                state: Optional[State] = None) -> Tuple[torch.Tensor, State]:
        """Logits ``[B, T, V]`` and the state after ``inputs``."""
        h, state = self.hidden(inputs, z, state)
        return self.logits(h), state


def select_state(state: State, index: torch.Tensor) -> State:
    """The state of the batch rows ``index`` (beam search reorders its beams)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)

"""Recurrent networks of the sentence VAE: plain ``torch.nn`` modules, no Pyro calls.

The encoder maps a padded batch of sentences to the guide's parameters; the decoder
maps previous tokens and a code ``z`` to each next token's logits. Shapes: ``B``
sentences, ``T`` tokens, ``V`` words, ``E`` embedding width, ``H`` hidden units.
"""

from typing import Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from .vocab import Vocabulary, lengths

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
State = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


def _check_cell(cell: str) -> None:
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {cell!r}")


class SentenceEncoder(nn.Module):
    """``x: [B, T]`` (indices, ``<pad>`` after ``<eos>``) -> ``[B, out_dim]``.

    An embedding, then a GRU or LSTM (``bidirectional``: both directions) read over each
    sentence's real tokens only (packed), its last hidden state(s) through a linear map.
    """

    def __init__(self, vocab_size: int, out_dim: int, embed_dim: int = 256,
                 hidden_size: int = 256, cell: str = "gru", bidirectional: bool = False):
        super().__init__()
        _check_cell(cell)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=Vocabulary.pad)
        self.rnn = CELLS[cell](embed_dim, hidden_size, batch_first=True,
                               bidirectional=bidirectional)
        self.out = nn.Linear(hidden_size * (2 if bidirectional else 1), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
    outputs to the embedding width when the two differ (else the identity).
    """

    def __init__(self, vocab_size: int, z_dim: int, embed_dim: int = 256,
                 hidden_size: int = 256, cell: str = "gru", z_every_step: bool = True,
                 use_z: bool = True, dropout: float = 0.0, tie_embeddings: bool = False):
        super().__init__()
        _check_cell(cell)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout!r}")
        self.cell, self.use_z, self.dropout = cell, use_z, float(dropout)
        self.z_every_step = z_every_step and use_z
        self.hidden_size = hidden_size
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=Vocabulary.pad)
        inputs = embed_dim + (z_dim if self.z_every_step else 0)
        self.rnn = CELLS[cell](inputs, hidden_size, batch_first=True)
        self.init = nn.Linear(z_dim, hidden_size * (2 if cell == "lstm" else 1)) if use_z \
            else None
        tied = tie_embeddings and hidden_size != embed_dim
        self.project = nn.Linear(hidden_size, embed_dim, bias=False) if tied else None
        self.out = nn.Linear(embed_dim if tie_embeddings else hidden_size, vocab_size)
        if tie_embeddings:
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
        """Next-token logits ``[..., V]`` of RNN outputs ``h: [..., H]``; ``<pad>`` and
        ``<bos>`` are never a next token, so their logits are -inf (no mass wasted)."""
        never = torch.zeros(self.out.out_features, dtype=torch.bool, device=h.device)
        never[[Vocabulary.pad, Vocabulary.bos]] = True
        bias = self.out.bias.masked_fill(never, float("-inf"))  # one pass over [..., V]
        h = self._drop(h)
        return F.linear(h if self.project is None else self.project(h), self.out.weight, bias)

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

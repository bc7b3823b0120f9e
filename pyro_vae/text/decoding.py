"""From codes to sentences: greedy decoding, sampling with a temperature, beam search.

Each takes a :class:`~pyro_vae.text.nets.SentenceDecoder` and codes ``z: [B, D]`` and
returns a padded LongTensor ``[B, T]`` (``<eos>`` then ``<pad>``), ``T <= max_len``;
a sentence that reaches ``max_len`` tokens without ``<eos>`` is cut there.
"""

from typing import List, Optional

import torch

from .nets import SentenceDecoder, select_state
from .vocab import Vocabulary, pad


@torch.no_grad()
def _ancestral(decoder: SentenceDecoder, z: torch.Tensor, max_len: int, choose) -> torch.Tensor:
    b = z.shape[0]
    token = torch.full((b, 1), Vocabulary.bos, dtype=torch.int64, device=z.device)
    state, out = None, []
    done = torch.zeros(b, dtype=torch.bool, device=z.device)
    for _ in range(max_len):
        logits, state = decoder(token, z, state)
        token = choose(logits[:, -1]).unsqueeze(1)
        out.append(token.squeeze(1).masked_fill(done, Vocabulary.pad))
        done |= token.squeeze(1) == Vocabulary.eos
        if done.all():
            break
    return torch.stack(out, 1)


def greedy(decoder: SentenceDecoder, z: torch.Tensor, max_len: int = 50) -> torch.Tensor:
    """The most probable next token at every step (deterministic)."""
    return _ancestral(decoder, z, max_len, lambda logits: logits.argmax(-1))


def sample(decoder: SentenceDecoder, z: torch.Tensor, max_len: int = 50,
           temperature: float = 1.0, generator: Optional[torch.Generator] = None
           ) -> torch.Tensor:
    """Each next token drawn from ``softmax(logits / temperature)``; ``temperature = 1``
    draws from p(x | z) itself, lower values approach greedy decoding."""
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    return _ancestral(decoder, z, max_len, lambda logits: torch.multinomial(
        torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1))


@torch.no_grad()
def beam_search(decoder: SentenceDecoder, z: torch.Tensor, width: int = 5,
                max_len: int = 50) -> torch.Tensor:
    """The sentence of highest ``log p(x | z)`` among ``width`` beams, for each code.

    Every step extends the live beams by every word and keeps the ``width`` best
    candidates; a candidate ending in ``<eos>`` is finished and leaves the beam. The
    search stops when ``width`` sentences are finished (or ``max_len``); the best finished
    one (by total log-probability, unnormalised) is returned, else the best live one.
    Width 1 is greedy decoding.
    """
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ValueError(f"width: expected a positive integer, got {width!r}")
    return pad([_beam(decoder, z[i:i + 1], int(width), max_len) for i in range(len(z))]) \
        .to(z.device)


def _beam(decoder: SentenceDecoder, z: torch.Tensor, width: int, max_len: int) -> List[int]:
    device = z.device
    tokens = torch.full((1, 1), Vocabulary.bos, dtype=torch.int64, device=device)
    scores = torch.zeros(1, device=device)
    state, finished = None, []
    for _ in range(max_len):
        zs = z.expand(len(tokens), -1)
        logits, state = decoder(tokens[:, -1:], zs, state)
        total = (scores.unsqueeze(1) + torch.log_softmax(logits[:, -1], -1)).flatten()
        best = total.topk(min(width, len(total))).indices
        beam, word = best // logits.shape[-1], best % logits.shape[-1]
        scores = total[best]
        tokens = torch.cat([tokens[beam], word.unsqueeze(1)], 1)
        state = select_state(state, beam)
        ended = word == Vocabulary.eos
        finished += [(s.item(), t[1:].tolist()) for s, t in zip(scores[ended], tokens[ended])]
        live = (~ended).nonzero().squeeze(1)
        if len(finished) >= width or len(live) == 0:
            break
        tokens, scores, state = tokens[live], scores[live], select_state(state, live)
    if finished:
        return max(finished, key=lambda f: f[0])[1]
    return tokens[scores.argmax()][1:].tolist()

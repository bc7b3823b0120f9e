"""From codes to sentences: greedy decoding, sampling with a temperature, beam search.

Each takes a :class:`~pyro_vae.text.nets.SentenceDecoder` and codes ``z: [B, D]`` and
returns a padded LongTensor ``[B, T]`` (``<eos>`` then ``<pad>``), ``T <= max_len``;
a sentence that reaches ``max_len`` tokens without ``<eos>`` is cut there.

Each also takes ``no_repeat_ngram = n``: no word may complete an n-gram that the
sentence already holds (:func:`repeated_ngrams`), the usual cure for the loops of greedy
and beam decoding ("of the <unk> of the <unk> ..."); 0 allows any. Sampling takes
``top_p``: draws only from the smallest set of most probable words whose mass reaches
``top_p`` (nucleus sampling, Holtzman et al. 2020; :func:`nucleus`).
"""

import numbers
from typing import List, Optional

import torch

from .nets import SentenceDecoder, select_state
from .vocab import Vocabulary, pad


def repeated_ngrams(history: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    """``[B, V]``, True at each word that would repeat an n-gram of its row of
    ``history: [B, t]`` (the tokens so far) if it came next: the word that followed each
    earlier occurrence of the row's last ``n - 1`` tokens. ``<eos>`` is never marked, so a
    sentence can always end; ``n = 0`` marks nothing."""
    banned = torch.zeros(history.shape[0], vocab_size, dtype=torch.bool, device=history.device)
    if n < 1 or history.shape[1] < n:
        return banned
    grams = history.unfold(1, n, 1)  # [B, t - n + 1, n]
    tail = history[:, history.shape[1] - n + 1:]  # [B, n - 1]
    rows, at = (grams[..., :-1] == tail.unsqueeze(1)).all(-1).nonzero(as_tuple=True)
    banned[rows, grams[rows, at, -1]] = True
    banned[:, Vocabulary.eos] = False
    return banned


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits: [..., V]`` with ``-inf`` outside the nucleus: the fewest most probable
    words whose probabilities sum to at least ``top_p`` (a word is kept when the mass
    of the words ranked above it is below ``top_p``; the most probable always is)."""
    probs, order = torch.softmax(logits, -1).sort(-1, descending=True)
    outside = probs.cumsum(-1) - probs >= top_p
    return logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) \
        and float(value).is_integer()


def check_options(temperature: float = 1.0, width: int = 1, top_p: float = 1.0,
                  no_repeat_ngram: int = 0) -> None:
    """Raise ``ValueError`` naming the first bad decoding option: ``temperature > 0``,
    ``width`` a positive integer, ``top_p`` in (0, 1], ``no_repeat_ngram`` a
    non-negative integer. The decoders call it; so does the CLI, before it loads a run."""
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    if not _is_int(width) or width < 1:
        raise ValueError(f"width: expected a positive integer, got {width!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected a probability in (0, 1], got {top_p!r}")
    if not _is_int(no_repeat_ngram) or no_repeat_ngram < 0:
        raise ValueError(f"no_repeat_ngram: expected a non-negative integer, got "
                         f"{no_repeat_ngram!r}")


@torch.no_grad()
def _ancestral(decoder: SentenceDecoder, z: torch.Tensor, max_len: int, choose,
               no_repeat_ngram: int = 0) -> torch.Tensor:
    check_options(no_repeat_ngram=no_repeat_ngram)
    b, n = z.shape[0], int(no_repeat_ngram)
    token = torch.full((b, 1), Vocabulary.bos, dtype=torch.int64, device=z.device)
    state, out = None, []
    done = torch.zeros(b, dtype=torch.bool, device=z.device)
    for _ in range(max_len):
        logits, state = decoder(token, z, state)
        logits = logits[:, -1]
        if n and out:
            banned = repeated_ngrams(torch.stack(out, 1), n, logits.shape[-1])
            logits = logits.masked_fill(banned, float("-inf"))
        token = choose(logits).unsqueeze(1)
        out.append(token.squeeze(1).masked_fill(done, Vocabulary.pad))
        done |= token.squeeze(1) == Vocabulary.eos
        if done.all():
            break
    return torch.stack(out, 1)


def greedy(decoder: SentenceDecoder, z: torch.Tensor, max_len: int = 50,
           no_repeat_ngram: int = 0) -> torch.Tensor:
    """The most probable next token at every step (deterministic)."""
    return _ancestral(decoder, z, max_len, lambda logits: logits.argmax(-1), no_repeat_ngram)


def sample(decoder: SentenceDecoder, z: torch.Tensor, max_len: int = 50,
           temperature: float = 1.0, generator: Optional[torch.Generator] = None,
           top_p: float = 1.0, no_repeat_ngram: int = 0) -> torch.Tensor:
    """Each next token drawn from ``softmax(logits / temperature)``, restricted to its
    nucleus when ``top_p < 1``; ``temperature = 1`` and ``top_p = 1`` draw from
    p(x | z) itself, lower values of either approach greedy decoding."""
    check_options(temperature=temperature, top_p=top_p)

    def choose(logits):
        logits = logits / temperature
        if top_p < 1:
            logits = nucleus(logits, top_p)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
    return _ancestral(decoder, z, max_len, choose, no_repeat_ngram)


@torch.no_grad()
def beam_search(decoder: SentenceDecoder, z: torch.Tensor, width: int = 5,
                max_len: int = 50, no_repeat_ngram: int = 0) -> torch.Tensor:
    """The sentence of highest ``log p(x | z)`` among ``width`` beams, for each code.

    Every step extends the live beams by every word and keeps the ``width`` best
    candidates; a candidate ending in ``<eos>`` is finished and leaves the beam. The
    search stops when ``width`` sentences are finished (or ``max_len``); the best finished
    one (by total log-probability, unnormalised) is returned, else the best live one.
    Width 1 is greedy decoding.
    """
    check_options(width=width, no_repeat_ngram=no_repeat_ngram)
    return pad([_beam(decoder, z[i:i + 1], int(width), max_len, int(no_repeat_ngram))
                for i in range(len(z))]).to(z.device)


def _beam(decoder: SentenceDecoder, z: torch.Tensor, width: int, max_len: int,
          no_repeat_ngram: int) -> List[int]:
    device = z.device
    tokens = torch.full((1, 1), Vocabulary.bos, dtype=torch.int64, device=device)
    scores = torch.zeros(1, device=device)
    state, finished = None, []
    for _ in range(max_len):
        zs = z.expand(len(tokens), -1)
        logits, state = decoder(tokens[:, -1:], zs, state)
        step = torch.log_softmax(logits[:, -1], -1)
        if no_repeat_ngram:
            step = step.masked_fill(repeated_ngrams(tokens[:, 1:], no_repeat_ngram,
                                                    step.shape[-1]), float("-inf"))
        total = (scores.unsqueeze(1) + step).flatten()
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

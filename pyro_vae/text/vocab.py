"""The vocabulary of a text data set: words to indices and back, with four specials."""

import itertools
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import torch

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)  # indices 0, 1, 2, 3 in every vocabulary


class Vocabulary:
    """Words in a fixed order: ``<pad> <unk> <bos> <eos>`` (indices 0..3), then the words.

    :meth:`build` takes the most frequent words of the training sentences (ties by first
    appearance, so the order is reproducible); every other word maps to ``<unk>``.
    """

    pad, unk, bos, eos = range(4)

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if words[:4] != list(SPECIALS):
            words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        if len(set(words)) != len(words):
            raise ValueError("vocab: expected distinct words, got duplicates")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], max_size: Optional[int] = None
              ) -> "Vocabulary":
        """The ``max_size`` (specials included) most frequent words of ``sentences``."""
        counts = Counter(w for s in sentences for w in s if w not in SPECIALS)
        if max_size is not None and max_size <= len(SPECIALS):
            raise ValueError(f"max_vocab: expected more than {len(SPECIALS)} words "
                             f"(the specials {', '.join(SPECIALS)} and at least one), "
                             f"got {max_size}")
        keep = len(counts) if max_size is None else max_size - len(SPECIALS)
        # Counter.most_common orders ties by first insertion: reproducible
        return cls([w for w, _ in counts.most_common(keep)])

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Vocabulary":
        """A vocabulary saved by :meth:`save`, one word a line."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocab: {path} is no file")
        return cls(path.read_text(encoding="utf-8").splitlines())

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text("\n".join(self.words) + "\n", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentence: Sequence[str]) -> List[int]:
        """Indices of the words of ``sentence`` followed by ``<eos>``."""
        return [self.index.get(w, self.unk) for w in sentence] + [self.eos]

    def decode(self, indices: Iterable[int]) -> str:
        """The words up to the first ``<eos>`` (or ``<pad>``), joined by spaces."""
        out = []
        for i in (int(i) for i in indices):
            if i in (self.eos, self.pad):
                break
            out.append(self.words[i] if 0 <= i < len(self.words) else UNK)
        return " ".join(out)

    def tensor(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """Sentences as one padded LongTensor ``[N, T]``: each sentence's indices, its
        ``<eos>``, then ``<pad>`` up to the longest (``T`` = its length + 1)."""
        return pad([self.encode(s) for s in sentences])


def pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Rows of indices as ``[N, max length]`` int64, padded with ``<pad>`` (0)."""
    size = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    out = torch.full((len(rows), int(size.max()) if len(rows) else 0), Vocabulary.pad,
                     dtype=torch.int64)
    # one scatter of every index, not a tensor per row (PTB has 42k rows)
    out[torch.arange(out.shape[1]) < size.unsqueeze(1)] = torch.tensor(
        list(itertools.chain.from_iterable(rows)), dtype=torch.int64)
    return out


def lengths(x: torch.Tensor) -> torch.Tensor:
    """Tokens of each padded sentence ``x: [N, T]`` (words and ``<eos>``): ``[N]``."""
    return (x != Vocabulary.pad).sum(-1)

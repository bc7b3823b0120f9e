"""Text for the sentence VAE: vocabulary, data sets, batches, networks, decoding.

=====================  =========================================================
:mod:`.vocab`          :class:`Vocabulary` (``<pad> <unk> <bos> <eos>``, then words)
:mod:`.corpus`         :func:`load_text`: ``ptb``, ``toy`` or a text file
:mod:`.batches`        buckets of similar length; word dropout
:mod:`.nets`           the RNN encoder and decoder (plain ``torch.nn``)
:mod:`.distribution`   p(x | z) of a sentence as one masked site
:mod:`.decoding`       greedy, sampled and beam-search decoding
:mod:`.report`         perplexity, and the sentences a run writes
=====================  =========================================================
"""

from .batches import bucket_batches, word_dropout
from .corpus import TEXT_DATASETS, TextData, load_text, toy_sentences
from .decoding import beam_search, greedy, sample
from .distribution import SentenceDistribution, token_log_probs
from .nets import SentenceDecoder, SentenceEncoder
from .vocab import SPECIALS, Vocabulary

__all__ = [
    "SPECIALS", "SentenceDecoder", "SentenceDistribution", "SentenceEncoder", "TEXT_DATASETS",
    "TextData", "Vocabulary", "beam_search", "bucket_batches", "greedy", "load_text", "sample",
    "toy_sentences", "token_log_probs", "word_dropout",
]

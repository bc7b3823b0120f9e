"""Partially labelled data: balanced labels by seed; interleaved batches for fit()."""

import pytest
import torch

from pyro_vae import InterleavedBatches, fit, keep_labels
from pyro_vae.infer import shuffled_batches


def test_keep_labels_is_balanced_and_seeded(mnist10k):
    y = mnist10k.y_train
    kept = keep_labels(y, 100, 10, seed=3)
    labelled = kept >= 0
    assert labelled.sum() == 100 and (kept == -1).sum() == len(y) - 100
    assert torch.equal(torch.bincount(kept[labelled], minlength=10), torch.full((10,), 10))
    assert torch.equal(kept[labelled], y[labelled])
    assert torch.equal(kept, keep_labels(y, 100, 10, seed=3))
    assert not torch.equal(kept, keep_labels(y, 100, 10, seed=4))
    # A remainder goes to some classes: 25 labels over 10 classes are 2 or 3 each.
    counts = torch.bincount(keep_labels(y, 25, 10, seed=0).clamp(min=0)[keep_labels(y, 25, 10) >= 0])
    assert counts.sum() == 25 and set(counts.tolist()) == {2, 3}


def test_keep_labels_errors():
    y = torch.tensor([0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="asked for 6 labels, the training set has 5"):
        keep_labels(y, 6, 2)
    with pytest.raises(ValueError, match="need 2 of class 0, the training set has 2|of class"):
        keep_labels(torch.tensor([0, 1, 1, 1, 1]), 4, 2)
    with pytest.raises(ValueError, match="non-negative integer"):
        keep_labels(y, -1, 2)


def test_interleaved_batches_alternate_and_cover_the_unlabelled_set():
    x = torch.arange(23.0).reshape(23, 1)
    y = torch.full((23,), -1)
    y[[2, 5, 11]] = torch.tensor([0, 1, 2])
    batches = InterleavedBatches(batch_size=4, labelled_batch_size=2)(
        (x, y), torch.Generator().manual_seed(0))
    kinds = [len(b) for b in batches]
    assert kinds == [1, 2] * 5  # 20 unlabelled images: 5 batches, each followed by a labelled one
    unlabelled = torch.cat([b[0] for b in batches if len(b) == 1]).squeeze(-1)
    assert sorted(unlabelled.tolist()) == sorted(set(range(23)) - {2, 5, 11})
    for x_l, y_l in (b for b in batches if len(b) == 2):
        assert len(x_l) == 2 and (y_l >= 0).all()
        assert torch.equal(y[x_l.squeeze(-1).long()], y_l)
    # Fewer labelled batches: one after every third unlabelled batch, the rest at the end.
    sparse = InterleavedBatches(4, 2, unlabelled_per_labelled=3)((x, y), torch.Generator())
    assert [len(b) for b in sparse] == [1, 1, 1, 2, 1, 1, 2]


def test_interleaved_batches_edge_cases():
    x = torch.rand(6, 1)
    all_labelled = InterleavedBatches(4)((x, torch.zeros(6, dtype=torch.long)), torch.Generator())
    assert [len(b[0]) for b in all_labelled] == [4, 2] and all(len(b) == 2 for b in all_labelled)
    none_labelled = InterleavedBatches(4)((x, torch.full((6,), -1)), torch.Generator())
    assert [len(b[0]) for b in none_labelled] == [4, 2] and all(len(b) == 1 for b in none_labelled)
    with pytest.raises(ValueError, match="unlabelled_per_labelled"):
        InterleavedBatches(4, unlabelled_per_labelled=0)


def test_fit_uses_the_batching_policy_and_logs_per_item_loss():
    calls = []

    def model(x, y=None):
        calls.append(None if y is None else len(y))

    x, y = torch.rand(10, 1), torch.tensor([0, 1] + [-1] * 8)
    history = fit(model, lambda x, y=None: None, (x, y), epochs=1, batch_size=4,
                  batches=InterleavedBatches(4, 2))
    # Pyro's SVI runs the model once per step: unlabelled, labelled, unlabelled, labelled, ...
    assert calls == [None, 2, None, 2]
    assert history[0]["train_loss"] == 0.0
    default = shuffled_batches(4)((x, y), torch.Generator())
    assert [len(b[0]) for b in default] == [4, 4, 2] and all(len(b) == 2 for b in default)

"""Semi-supervised classification with 100 labels: M2 and M1+M2 against labels alone.

For each label draw (seed), ``--labels`` balanced labels are kept and the rest of the
training set is unlabelled. Every method reports the test accuracy of its classifier
after its last epoch (no early stopping: the test set is never used to choose).

=================  ==============================================================
``labels-only``    the M2 classifier network, cross-entropy on the labels alone
``m2-sparse``      M2 on pixels, each labelled image once per epoch (labelled
                   batches spread through the unlabelled pass, as in Pyro's
                   ss-vae example), alpha 46
``m2``             M2 on pixels, one labelled batch after every unlabelled one
``m1-labels-only`` the classifier network on the codes of M1 (a plain VAE trained
                   on all training images, no labels), labels alone
``m1+m2``          M2 on those codes, ``normal`` likelihood (Kingma et al. 2014)
``m1+m2-sampled``  the same with the label of an unlabelled code drawn once from
                   q(y|x) (score-function gradient) instead of enumerated
``adgm``           ``pyro-vae train --model adgm --labels 100`` at its defaults
                   (auxiliary latent a; Maaloe et al. 2016), ``--adgm-epochs``
``sdgm``           the same with ``--model sdgm`` (a on the generative path)
=================  ==============================================================

M1 is trained once per data set (it never sees a label) and shared by the seeds.
The tables of docs/variants.md::

    python benchmarks/m2.py --dataset mnist-10k                       # 26 min
    python benchmarks/m2.py --dataset fashion-mnist --methods labels-only m2 --m2-epochs 3
    python benchmarks/m2.py --dataset fashion-mnist --methods m1-labels-only m1+m2 \
        --m1-epochs 15 --m1m2-epochs 10
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import pyro

from pyro_vae import (M2, VAE, InterleavedBatches, TrainConfig, accuracy, encode_data, fit,
                      keep_labels, load_dataset)
from pyro_vae.checkpoint import CHECKPOINT
from pyro_vae.runs import Run
from pyro_vae.train import train
from pyro_vae.training.averaging import KINDS as AVERAGES

METHODS = ["labels-only", "m2-sparse", "m2", "m1-labels-only", "m1+m2", "m1+m2-sampled",
           "adgm", "sdgm"]


def labels_only(model: M2, x, y, args) -> None:
    """Cross-entropy on the labelled images alone: full batch Adam, a fixed step count."""
    keep = y >= 0
    optim = torch.optim.Adam(model.classifier.parameters(), lr=args.lr)
    for _ in range(args.baseline_steps):
        optim.zero_grad()
        F.cross_entropy(model.classifier(x[keep]), y[keep]).backward()
        optim.step()


def semi_supervised(model: M2, x, y, args, epochs: int, every: int, seed: int) -> None:
    """One SVI on interleaved labelled and unlabelled batches (M2's J_alpha)."""
    fit(model.model, model.guide, (x, y), epochs=epochs, lr=args.lr, seed=seed,
        elbo="TraceEnum_ELBO", batches=InterleavedBatches(args.batch_size, args.batch_size, every))


def m1_codes(data, args):
    """Train M1 on the training images (no labels) once; its posterior means of all images."""
    beta = "" if args.m1_beta == 1 else f"-beta{args.m1_beta:g}"
    cache = Path(args.cache) / f"m1-{data.name}-{args.m1_epochs}{beta}.pt"
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    m1 = VAE(data.x_shape, z_dim=args.m1_z, hidden=args.m1_hidden, activation="softplus",
             beta=args.m1_beta)
    t0, cached = time.perf_counter(), cache.is_file()
    if cached:
        m1.load_state_dict(torch.load(cache, weights_only=True))
    else:
        fit(m1.model, m1.guide, data.x_train, epochs=args.m1_epochs, lr=1e-3, seed=0)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m1.state_dict(), cache)
    how = f"loaded from {cache}" if cached else f"{(time.perf_counter() - t0) / 60:.1f} min"
    print(f"# M1: VAE, z_dim {args.m1_z}, hidden {args.m1_hidden} softplus, beta {args.m1_beta:g}, "
          f"{args.m1_epochs} epochs on the {len(data.x_train)} training images, no labels ({how})",
          flush=True)
    return encode_data(m1, data)


def auxiliary(method: str, data, seed: int, args) -> dict:
    """``pyro-vae train --model adgm|sdgm --labels N --seed S`` at the model's defaults;
    the test accuracy after the last epoch, by row: with a weight average, that of the
    average and (``<method>, last weights``) that of the training weights it averaged."""
    out = Path(args.cache) / f"{method}-{data.name}-{args.labels}-seed{seed}"
    changed = {k: v for k, v in (("alpha", args.adgm_alpha),
                                 ("lr_schedule", args.adgm_lr_schedule),
                                 ("weight_average", args.adgm_weight_average),
                                 ("average_start", args.adgm_average_start)) if v is not None}
    config = TrainConfig.for_model(method, data=args.dataset, labels=args.labels, seed=seed,
                                   epochs=args.adgm_epochs, threads=args.threads, out=str(out),
                                   **changed)
    # a finished or shorter run of the same draw and settings is reused or continued
    # (exact resume; ``train`` refuses other settings); a longer one starts again
    done = Run.load(out).epoch if (out / CHECKPOINT).is_file() else 0
    resume = 0 < done <= args.adgm_epochs
    _, history = train(config, resume=resume, overwrite=not resume)
    if not args.adgm_weight_average:
        return {method: history[-1]["test_accuracy"]}
    last = Run.load(out, averaged=False).model
    return {f"{method}, {args.adgm_weight_average} from epoch {config.average_start}":
            history[-1]["test_accuracy"],
            f"{method}, last weights": accuracy(last.classify, data.x_test, data.y_test)}


def run(method, data, codes, seed, args):
    if method in ("adgm", "sdgm"):
        return auxiliary(method, data, seed, args)
    y = keep_labels(data.y_train, args.labels, data.num_classes, seed=seed)
    source = codes if method.startswith("m1") else data
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    kw = dict(num_classes=data.num_classes, z_dim=args.z_dim, hidden=(500,), activation="softplus")
    if method.startswith("m1"):
        enum = "none" if method.endswith("sampled") else "parallel"
        model = M2(source.x_shape, likelihood="normal", alpha=args.alpha, enum_discrete=enum, **kw)
    else:
        model = M2(source.x_shape, alpha=46.0 if method == "m2-sparse" else args.alpha, **kw)
    x = source.x_train
    if method.endswith("labels-only"):
        labels_only(model, x, y, args)
    elif method == "m2-sparse":  # one labelled batch per epoch
        semi_supervised(model, x, y, args, args.m2_epochs, len(x), seed)
    elif method == "m2":
        semi_supervised(model, x, y, args, args.m2_epochs, args.unlabelled_per_labelled, seed)
    else:
        semi_supervised(model, x, y, args, args.m1m2_epochs, args.unlabelled_per_labelled, seed)
    return {method: accuracy(model.classify, source.x_test, source.y_test)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-10k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=200.0)
    parser.add_argument("--unlabelled-per-labelled", type=int, default=1,
                        help="unlabelled batches per labelled batch (m2, m1+m2)")
    parser.add_argument("--z-dim", type=int, default=50, help="latent dimension of M2")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--baseline-steps", type=int, default=500)
    parser.add_argument("--m2-epochs", type=int, default=10, help="epochs of M2 on pixels")
    parser.add_argument("--m1m2-epochs", type=int, default=30, help="epochs of M2 on codes")
    parser.add_argument("--m1-epochs", type=int, default=100)
    parser.add_argument("--adgm-epochs", type=int, default=30, help="epochs of ADGM and SDGM")
    parser.add_argument("--adgm-alpha", type=float, default=None,
                        help="ADGM and SDGM's classification weight (default: the model's)")
    parser.add_argument("--adgm-lr-schedule", default=None,
                        help="ADGM and SDGM's learning-rate schedule, e.g. cosine (default: none)")
    parser.add_argument("--adgm-weight-average", default=None, choices=AVERAGES[1:],
                        help="ADGM and SDGM evaluated with an average of their weights "
                             "(default: none)")
    parser.add_argument("--adgm-average-start", type=int, default=None,
                        help="epochs before the ADGM's and SDGM's weight average begins")
    parser.add_argument("--m1-z", type=int, default=50)
    parser.add_argument("--m1-beta", type=float, default=0.5)
    parser.add_argument("--m1-hidden", type=int, nargs="+", default=[600, 600])
    parser.add_argument("--cache", default="runs/bench-m2", help="folder for the trained M1")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    codes = m1_codes(data, args) if any(m.startswith("m1") for m in args.methods) else None
    print(f"# {args.dataset}: {args.labels} labels, {len(data.x_train) - args.labels} unlabelled, "
          f"{len(data.x_test)} test images; seeds {args.seeds}")
    print("| method | test accuracy % (mean ± sd) | per seed | minutes |")
    print("| --- | --- | --- | --- |")
    for method in args.methods:
        t0, scores = time.perf_counter(), {}
        for seed in args.seeds:
            for row, score in run(method, data, codes, seed, args).items():
                scores.setdefault(row, []).append(100 * score)
        minutes = (time.perf_counter() - t0) / 60
        for row, values in scores.items():
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"| {row} | {statistics.mean(values):.1f} ± {sd:.1f} | "
                  f"{', '.join(f'{s:.1f}' for s in values)} | {minutes:.1f} |", flush=True)


if __name__ == "__main__":
    main()

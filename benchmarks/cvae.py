"""Does the class-conditional VAE draw the class it is asked for?

Trains one CVAE on mnist-10k as ``pyro-vae train --model cvae`` does by default (10
epochs, batches of 128, Adam 1e-3, Trace_ELBO, seed 0, z_dim 50, convolutional
networks, the label-dependent prior p(z | y) with class means spread by 2), draws ``--per-class`` images of every class
as ``pyro-vae sample --label k`` does (z ~ p(z | y = k), the mean image of
p(x | z, y = k)) and lets an independent classifier (:mod:`pyro_vae.quality.classifier`,
trained on real images only) label them. Prints, per class, the share recognised as
the class asked for, then the overall share, the worst class, the classifier's own
test accuracy and the CVAE's test -ELBO(x, y).

    OMP_NUM_THREADS=1 python benchmarks/cvae.py                            # the defaults
    OMP_NUM_THREADS=1 python benchmarks/cvae.py --net mlp --prior normal   # N(0, I), MLP
    OMP_NUM_THREADS=1 python benchmarks/cvae.py --net mlp --prior normal --z-dim 4
    OMP_NUM_THREADS=1 python benchmarks/cvae.py --net mlp --loc-scale 3    # MLP, p(z | y)
    pyro-vae train --model cvae --out runs/cvae && python benchmarks/cvae.py --run runs/cvae

Each command is one variant, about 15 s (mlp) or 45 s (conv) on one core, plus one
minute the first time for the classifier, which is then cached (``--cache``). Add
``--seed S`` for another seed. The tables of docs/variants.md come from these commands.
"""

import argparse
import json
import time
from pathlib import Path

import torch

import pyro

from pyro_vae import CVAE, fit, load_dataset
from pyro_vae.priors import ClassNormal
from pyro_vae.quality import CACHE, EPOCHS, load_or_train, predict


def recognised(cvae: CVAE, net, num_classes: int, per_class: int, seed: int) -> list:
    """Per class ``k``, the share of ``cvae.generate(per_class, y=k)`` that ``net`` labels
    ``k``, each class drawn after ``torch.manual_seed(seed)`` as ``pyro-vae sample --label k
    --seed seed`` draws it."""
    hits = []
    for k in range(num_classes):
        torch.manual_seed(seed)
        hits.append((predict(net, cvae.generate(per_class, y=k)) == k).float().mean().item())
    return hits


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10, help="CVAE epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CVAE's training (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--prior", default="class", help="CVAE prior (default: class)")
    p.add_argument("--z-dim", type=int, default=50, help="latent dimension (default 50)")
    p.add_argument("--net", default="conv", choices=["mlp", "conv"], help="networks (default conv)")
    p.add_argument("--loc-scale", type=float, default=2.0,
                   help="with --prior class: the class means start as draws of "
                        "N(0, LOC_SCALE^2 I) (default 2, the library's)")
    p.add_argument("--per-class", type=int, default=1000, help="samples per class (default 1000)")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="seed set before drawing each class (default: --seed)")
    p.add_argument("--run", help="score the run folder of `pyro-vae train --model cvae` "
                   "instead of training here")
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--classifier-epochs", type=int, default=EPOCHS)
    p.add_argument("--classifier-seed", type=int, default=0)
    p.add_argument("--cache", default=str(CACHE), help="folder of the cached classifier")
    return p


def score_run(args, data, net) -> dict:
    """Score the samples of a CVAE trained by ``pyro-vae train`` (``--run``)."""
    from pyro_vae.runs import Run

    run = Run.load(args.run)
    sample_seed = args.seed if args.sample_seed is None else args.sample_seed
    hits = recognised(run.model, net, data.num_classes, args.per_class, sample_seed)
    test_loss = json.loads((Path(args.run) / "metrics.jsonl").read_text().splitlines()[-1])
    return {"hits": hits, "overall": sum(hits) / len(hits), "worst": min(hits),
            "worst_class": hits.index(min(hits)), "test_loss": test_loss["test_loss"]}


def measure(args, data, net) -> dict:
    """Train the CVAE ``args`` describe and score its samples with ``net``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)  # as `pyro-vae train` does before building the model
    prior = args.prior
    if prior == "class":
        prior = ClassNormal(args.z_dim, data.num_classes, args.loc_scale)
    cvae = CVAE(data.x_shape, num_classes=data.num_classes, prior=prior,
                z_dim=args.z_dim, net=args.net)
    history = fit(cvae.model, cvae.guide, (data.x_train, data.y_train),
                  test_data=(data.x_test, data.y_test), epochs=args.epochs, batch_size=128,
                  lr=1e-3, elbo="Trace_ELBO", seed=args.seed)
    cvae.eval()
    sample_seed = args.seed if args.sample_seed is None else args.sample_seed
    hits = recognised(cvae, net, data.num_classes, args.per_class, sample_seed)
    return {"hits": hits, "overall": sum(hits) / len(hits), "worst": min(hits),
            "worst_class": hits.index(min(hits)), "test_loss": history[-1]["test_loss"]}


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    judge = load_or_train(data, args.classifier_epochs, args.classifier_seed, Path(args.cache))
    print(f"# {judge.summary}", flush=True)
    net = judge.net
    t0 = time.perf_counter()
    result = score_run(args, data, net) if args.run else measure(args, data, net)
    spread = f" (class means spread {args.loc_scale:g})" if args.prior == "class" else ""
    if args.run:
        print(f"# CVAE of the run folder {args.run}; {args.per_class} samples per class")
    else:
        print(f"# CVAE: prior {args.prior}{spread}, z_dim {args.z_dim}, net {args.net}, "
              f"{args.epochs} epochs, batch 128, Adam 1e-3, Trace_ELBO, seed {args.seed} "
              f"({(time.perf_counter() - t0) / 60:.1f} min); {args.per_class} samples per class")
    print("| class | recognised as the class asked for % |")
    print("| --- | --- |")
    for k, hit in enumerate(result["hits"]):
        print(f"| {k} | {100 * hit:.1f} |")
    print(f"overall {100 * result['overall']:.2f}%, worst {100 * result['worst']:.1f}% "
          f"(class {result['worst_class']}), test -ELBO(x, y) {result['test_loss']:.2f} nats",
          flush=True)
    return result


if __name__ == "__main__":
    main()

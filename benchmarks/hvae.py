"""Test log-likelihood of the two-level VAE against the single-level VAE and IAF + VampPrior.

The density protocol of ``docs/priors_guides.md``: mnist-10k with ``--binarize dynamic``
(a fresh Bernoulli sample of the 8,000 training digits each epoch, the 2,000 test digits
binarised once), the same optimiser, batch size, epochs and seed for every row; each
row is scored on all test digits by its test ELBO, the KL and active units of each
latent level, and the importance-weighted estimate of -log p(x) (Burda et al. 2015)
with K samples. Every ``--curve-every`` epochs it also estimates -log p(x) with
``--curve-k`` samples on ``--curve-images`` training and test digits, to show where
overfitting of the training digits sets in. Prints two markdown tables of measured
numbers; each row's per-digit NLL is kept (``nll.pt``) so that rows of later runs are
paired with the references over the same digits.

    python benchmarks/hvae.py                        # the full schedule: 100 epochs
    python benchmarks/hvae.py --epochs 20 --rows vae,hvae-vamp   # a short schedule
    python benchmarks/hvae.py --epochs 500 --lr-schedule cosine --rows hvae-warmup-batchnorm \\
        --out runs/bench/hvae-500 --references runs/bench/hvae    # paired with the 100-epoch refs
    python benchmarks/hvae.py --epochs 500 --table-only --out runs/bench/hvae-500  # print again
    python benchmarks/hvae.py --epochs 1 --nll-images 20 --iw-samples 10 --curve-every 1 \\
        --curve-images 10 --curve-k 5 --rows vae,hvae            # smoke
"""

import argparse
import json
import logging
import math
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import RenyiELBO

from pyro_vae import TrainConfig, fit
from pyro_vae.checkpoint import write_json
from pyro_vae.data import binarize
from pyro_vae.evaluate import elbo_terms, iw_log_likelihood, kl_per_site, latent_statistics
from pyro_vae.schedules import SCHEDULES
from pyro_vae.train import build_model, prepare_data
from pyro_vae.training.callbacks import LR_SCHEDULES, Callback, KLWarmup

# Each row: the config fields that differ from COMMON. The first two are the
# single-level references (docs/priors_guides.md); the others are two-level models.
ROWS = {
    "vae": dict(model="vae", guide="diagonal", prior="normal", z_dim=40),
    "iaf-vamp": dict(model="vae", guide="iaf", prior="vamp", z_dim=40),
    "hvae": dict(model="hvae", prior="normal"),
    "hvae-warmup": dict(model="hvae", prior="normal", warmup="linear"),
    "hvae-vamp": dict(model="hvae", prior="vamp"),
    "hvae-vamp-warmup": dict(model="hvae", prior="vamp", warmup="linear"),
    # what each ingredient buys: one change to hvae-vamp-warmup (or hvae-warmup) at a time
    "hvae-vamp-warmup-freebits": dict(model="hvae", prior="vamp", warmup="linear", free_bits=2.0),
    "hvae-vamp-warmup-weightnorm": dict(model="hvae", prior="vamp", warmup="linear",
                                        norm="weight"),
    "hvae-vamp-warmup-100pseudo": dict(model="hvae", prior="vamp", warmup="linear",
                                       pseudo_inputs=100),
    "hvae-warmup-batchnorm": dict(model="hvae", prior="normal", warmup="linear", norm="batch"),
    "hvae3-vamp-warmup": dict(model="hvae", prior="vamp", warmup="linear", levels=3,
                              z_dims=(40, 40, 40), level_hidden=(300, 300)),
    "hvae-iaf-vamp-warmup": dict(model="hvae", prior="vamp", guide="iaf", warmup="linear"),
    "hvae-vamp-warmup-conv": dict(model="hvae", prior="vamp", warmup="linear", net="conv"),
    "hvae-vamp-warmup-skip": dict(model="hvae", prior="vamp", warmup="linear", skip=True),
    "hvae-warmup-batchnorm-skip": dict(model="hvae", prior="normal", warmup="linear",
                                       norm="batch", skip=True),
    # trained on the importance-weighted bound of K = 5 or 10 (Burda et al. 2015), not the ELBO
    "hvae-warmup-batchnorm-iwae5": dict(model="hvae", prior="normal", warmup="linear",
                                        norm="batch", elbo="IWAE", num_particles=5),
    "hvae-warmup-batchnorm-iwae10": dict(model="hvae", prior="normal", warmup="linear",
                                         norm="batch", elbo="IWAE", num_particles=10),
}
REFERENCES = ("vae", "iaf-vamp")


class Overfitting(Callback):
    """Every ``every`` epochs, ``train_nll`` and ``test_nll``: -L_K on fixed digits of
    each, with the training loop's random state left untouched."""

    def __init__(self, model, x_train, x_test, every, k):
        self.model, self.x_train, self.x_test, self.every, self.k = model, x_train, x_test, every, k

    def on_epoch_end(self, state, metrics):
        if metrics["epoch"] % self.every:
            return
        training = self.model.training
        self.model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for name, x in (("train_nll", self.x_train), ("test_nll", self.x_test)):
                metrics[name] = -iw_log_likelihood(self.model.model, self.model.guide, x,
                                                   num_samples=self.k).mean().item()
        self.model.train(training)


def run_row(name, fields, args, data):
    values = dict(
        dataset="mnist-10k", binarize="dynamic", hidden=args.hidden, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, seed=args.seed,
        optimizer=args.optimizer, weight_decay=args.weight_decay,
        clip_norm=args.clip_norm, max_bad_steps=args.max_bad_steps, device="cpu",
        mixture_components=50, pseudo_inputs=args.pseudo_inputs, flow_layers=2,
        warmup_epochs=args.warmup_epochs or max(args.epochs / 5, 1.0),
        out=str(Path(args.out) / name))
    if fields["model"] == "hvae":
        values.update(z_dims=args.z_dims, level_hidden=args.level_hidden)
        if args.min_scale is not None:
            values.update(min_scale=args.min_scale)
    config = TrainConfig.from_dict({**values, **fields})
    pyro.set_rng_seed(args.seed)  # the initial weights too: a row is the same alone or after others
    model = build_model(config, data.x_shape, data.num_classes)
    generator = torch.Generator().manual_seed(1)  # the training digits of the curves
    picked = torch.randperm(len(data.x_train), generator=generator)[: args.curve_images]
    x_curve = binarize(data.x_train[picked], generator)
    callbacks = [Overfitting(model, x_curve, data.x_test[: args.curve_images],
                             args.curve_every, args.curve_k)]
    if getattr(config, "warmup", "none") != "none":
        callbacks.append(KLWarmup(model, SCHEDULES[config.warmup](config.warmup_epochs)))
    elbo = None  # the model's own; the IWAE rows' bound with its K draws vectorised
    if config.elbo == "IWAE":
        elbo = RenyiELBO(alpha=0, num_particles=config.num_particles, vectorize_particles=True,
                         max_plate_nesting=1)
    history = fit(model.model, model.guide, data.x_train, test_data=data.x_test, elbo=elbo,
                  epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                  optimizer=config.optimizer, weight_decay=config.weight_decay,
                  lr_schedule=config.lr_schedule, seed=config.seed, device="cpu",
                  clip_norm=config.clip_norm or None, max_bad_steps=config.max_bad_steps,
                  callbacks=callbacks, transform=lambda x, g: binarize(x, g))
    model.eval()
    x_test = data.x_test
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    full = elbo_terms(model.model, model.guide, x_test)
    sites = getattr(model, "sites", ("z",))
    kls = kl_per_site(model.model, model.guide, x_test)
    active = {s: active_units(model, x_test, s) for s in sites}
    nll = -iw_log_likelihood(model.model, model.guide, x_test[: args.nll_images],
                             num_samples=args.iw_samples)
    folder = Path(args.out) / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(nll, folder / "nll.pt")
    return {
        "row": name, "test_elbo": -full["test_loss"], "kl": full["kl"],
        "kl_per_level": [kls[s] for s in sites], "active_units": [active[s] for s in sites],
        "nll": nll.mean().item(), "nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
        "nll_images": len(nll), "iw_samples": args.iw_samples,
        "train_s": sum(h["epoch_s"] for h in history), "nll_s": time.perf_counter() - t0,
        "curves": [{k: h[k] for k in ("epoch", "train_nll", "test_nll")}
                   for h in history if "test_nll" in h],
        "bad_steps": history[-1].get("bad_steps", 0),
        "final_train_loss": history[-1]["train_loss"], "final_test_loss": history[-1]["test_loss"],
        "config": config.to_dict(),
    }, nll


def active_units(model, x, site):
    """Active units of ``site``, or None where the statistics fail (the mutual-information
    estimate inverts a flow guide at other digits' codes, which can overflow)."""
    try:
        return latent_statistics(model.model, model.guide, x, site=site)["active_units"]
    except ValueError:
        return None


def paired(nll, folder):
    """``mean ± standard error`` of ``nll - reference`` over the same digits, or '-'."""
    path = folder / "nll.pt"
    if not path.is_file():
        return "-"
    reference = torch.load(path)
    if len(reference) != len(nll):
        return "-"
    diff = nll - reference
    if not diff.any():
        return "0 (reference)"
    return f"{diff.mean():+.2f} ± {diff.std() / math.sqrt(len(diff)):.2f}"


def table_line(row):
    """One markdown row of the results table."""
    return (f"| {row['row']} | {row['test_elbo']:.2f} | {row['nll']:.2f} ± {row['nll_stderr']:.2f} "
            f"| {row['minus_vae']} | {row['minus_iaf_vamp']} "
            f"| {' / '.join(f'{k:.2f}' for k in row['kl_per_level'])} "
            f"| {' / '.join(str(a) if a is not None else '-' for a in row['active_units'])} "
            f"| {row['train_s']:.0f} | {row['nll_s']:.0f} |")


def load_json(path):
    return json.loads(path.read_text()) if path.is_file() else []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="vae,iaf-vamp,hvae-vamp-warmup,"
                        "hvae-vamp-warmup-freebits,hvae-warmup,hvae-warmup-batchnorm,"
                        "hvae-vamp,hvae",
                        help=f"comma-separated, of: {', '.join(ROWS)}")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--hidden", default="300")
    parser.add_argument("--z-dims", default="40,40", help="the HVAE rows' z1,z2")
    parser.add_argument("--level-hidden", default="300", help="the HVAE rows' level-2 width")
    parser.add_argument("--warmup-epochs", type=float, default=None,
                        help="length of the linear KL warm-up of the rows that have one "
                        "(default: a fifth of --epochs)")
    parser.add_argument("--pseudo-inputs", type=int, default=500)
    parser.add_argument("--min-scale", type=float, default=None,
                        help="the HVAE rows' floor on the ladder's standard deviations "
                        "(default: the model's; 0: none, as the rows run before it existed)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="L2 for adam, decoupled for adamw (0: off)")
    parser.add_argument("--lr-schedule", default="none", choices=sorted(LR_SCHEDULES),
                        help="learning-rate schedule of every row (cosine: to 0 over the run)")
    parser.add_argument("--clip-norm", type=float, default=0.0,
                        help="clip each parameter's gradient to this norm (0: off)")
    parser.add_argument("--max-bad-steps", type=int, default=0,
                        help="steps with a non-finite loss or gradient skipped before a row stops")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the NLL estimate")
    parser.add_argument("--nll-images", type=int, default=2000,
                        help="first N test digits scored by the NLL estimate")
    parser.add_argument("--curve-every", type=int, default=10)
    parser.add_argument("--curve-k", type=int, default=100)
    parser.add_argument("--curve-images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench/hvae")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: print the rows already in --out for --epochs, "
                        "paired with --references")
    parser.add_argument("--references", default=None,
                        help="folder of the reference rows (vae/, iaf-vamp/) whose per-digit "
                        "NLL the rows are paired with; default --out, e.g. the 100-epoch "
                        "folder for a longer schedule's rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    rows = [] if args.table_only else args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"rows: unknown {unknown}; choose from {', '.join(ROWS)}")
    data = prepare_data(TrainConfig(data="mnist-10k", binarize="dynamic"))
    # References first, so that every later row is paired with them.
    rows = sorted(rows, key=lambda r: r not in REFERENCES)

    out = Path(args.out) / f"results-{args.epochs}ep.json"
    references = Path(args.references or args.out)
    header = (f"| row | test ELBO | test NLL (K={args.iw_samples}) | NLL - vae | NLL - iaf-vamp "
              "| KL per level (top first) | active units per level | train s | NLL s |")
    if rows:
        print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    for name in rows:
        try:
            row, nll = run_row(name, ROWS[name], args, data)
        except FloatingPointError as err:  # a diverged row is a result too: say so, go on
            print(f"| {name} | stopped: {str(err).split(';')[0]} |", flush=True)
            continue
        row["minus_vae"] = paired(nll, references / "vae")
        row["minus_iaf_vamp"] = paired(nll, references / "iaf-vamp")
        print(table_line(row), flush=True)
        # Rows of earlier runs of the same schedule are kept (a row run again replaces its
        # own); the file is read again here, so runs of other rows beside this one add theirs.
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, [r for r in load_json(out) if r["row"] != name] + [row])

    results = load_json(out)
    if len(results) > len(rows):  # every row of the schedule, paired with today's references
        print(f"\nAll rows of {out}, paired with the references in {references}:\n")
        print(header + "\n|" + "---|" * (header.count("|") - 1))
        for r in results:
            path = Path(args.out) / r["row"] / "nll.pt"
            if path.is_file():
                nll = torch.load(path)
                r["minus_vae"] = paired(nll, references / "vae")
                r["minus_iaf_vamp"] = paired(nll, references / "iaf-vamp")
            print(table_line(r))

    print(f"\nTrain vs test NLL (K={args.curve_k}, {args.curve_images} digits of each):\n")
    epochs = sorted({c["epoch"] for r in results for c in r["curves"]})
    print("| epoch | " + " | ".join(f"{r['row']} train / test" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for epoch in epochs:
        cells = []
        for r in results:
            c = next((c for c in r["curves"] if c["epoch"] == epoch), None)
            cells.append(f"{c['train_nll']:.2f} / {c['test_nll']:.2f}" if c else "-")
        print(f"| {epoch} | " + " | ".join(cells) + " |")
    print(f"\n{len(results)} rows, {args.epochs} epochs each; ELBO, KL and active units on all "
          f"{len(data.x_test)} test digits; NLL on the first {args.nll_images} (± one standard "
          "error over digits; differences paired over the same digits).")


if __name__ == "__main__":
    main()

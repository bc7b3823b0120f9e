"""Anomaly detection with a VAE: train on nine digits, flag the tenth.

Trains a VAE on the mnist-10k digits other than ``--anomaly`` (the normal data), scores
the test digits with every anomaly score, and prints how well each one separates the
unseen digit from the nine it knows (AUROC, anomalies positive). Thresholds and the
scores' references come from normal data only; the labels of the nine normal digits are
used by the ``classifier`` score, those of the anomalies never.

    python examples/anomaly.py --out runs/anomaly          # about a minute on one core
    python examples/anomaly.py --epochs 1 --num-train 500 --num-test 300
"""

import argparse
from pathlib import Path

from pyro_vae import VAE, fit, load_dataset
from pyro_vae.anomaly import SCORES, Scorer, detection_metrics, quantile_threshold
from pyro_vae.anomaly import plots
from pyro_vae.data import split_validation
from pyro_vae.plots import save


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--anomaly", type=int, default=9, help="the digit left out of training")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--num-train", type=int, default=None)
    p.add_argument("--num-test", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/anomaly"))
    args = p.parse_args(argv)

    data = load_dataset("mnist-10k", exclude_classes=[args.anomaly])  # test set keeps all ten
    x_fit, y_fit, x_val, y_val = split_validation(  # normal items held out for thresholds
        data.x_train[:args.num_train], data.y_train[:args.num_train], 0.1, seed=0)
    vae = VAE(x_shape=data.x_shape, z_dim=50, hidden=(400,))
    fit(vae.model, vae.guide, x_fit, epochs=args.epochs, elbo="TraceMeanField_ELBO",
        run_dir=args.out, overwrite=True, progress=False)
    vae.eval()

    scorer = Scorer(vae, elbo_samples=4).fit(x_fit, y_fit, calibration=(x_val, y_val))
    # 'ratio' needs a background model and 'llr' a hierarchical one
    names = [n for n in SCORES if n not in ("ratio", "llr")]
    # an unseen class is a semantic anomaly: the classifier of the known classes flags it
    threshold = quantile_threshold(scorer.score(x_val, scores=["classifier"])["classifier"], 0.95)
    x_test, y_test = data.x_test[:args.num_test], data.y_test[:args.num_test]
    scores = scorer.score(x_test, scores=names)
    unseen = y_test == args.anomaly
    s_in = {n: s[~unseen] for n, s in scores.items()}
    s_out = {n: s[unseen] for n, s in scores.items()}
    print(f"digit {args.anomaly} against the other nine ({int(unseen.sum())} and "
          f"{int((~unseen).sum())} test digits)")
    for name in names:
        m = detection_metrics(s_in[name], s_out[name])
        print(f"  {name:<11} AUROC {m['auroc']:.3f}  FPR at 95% TPR {m['fpr_at_95_tpr']:.3f}")
    flagged = scores["classifier"] > threshold
    print(f"'classifier' above its 0.95 quantile on normal data flags "
          f"{flagged[unseen].double().mean():.1%} of the unseen digits and "
          f"{flagged[~unseen].double().mean():.1%} of the known ones")
    save(plots.roc_curves(s_in, s_out), args.out / "roc.png")
    save(plots.histograms(s_in, s_out), args.out / "histograms.png")
    print(f"wrote {args.out / 'roc.png'} and {args.out / 'histograms.png'}")


if __name__ == "__main__":
    main()

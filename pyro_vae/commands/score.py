"""``pyro-vae score``: per-item anomaly scores of a run, their detection metrics on
out-of-distribution data, thresholds calibrated on normal data, and flags.

Writes ``--out`` (CSV: one row per item, one column per score, higher meaning more
anomalous, and ``flag_<score>`` where a threshold is known). With ``--ood-data`` or
``--held-out-class`` it also prints AUROC, AUPRC and FPR at 95% TPR per score, the
typicality test on batches, and writes ``<out>_hist.png`` and ``<out>_roc.png``.
"""

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .. import plots as base_plots
from ..anomaly import SCORES, Scorer, detection_metrics, quantile_threshold, typicality_test
from ..anomaly import plots
from ..anomaly.calibration import check_shape, load_thresholds, normal_splits, save_thresholds
from ..anomaly.compress import COMPRESSORS
from ..checkpoint import atomic_write
from ..data import DATASETS, binarize, load_items
from ..runs import Run
from ..train import TEST_BINARIZE_SEED, prepare_data
from . import Subcommand, load_run, run_arguments, test_data

DEFAULTS = {"iw_samples": 0, "elbo_samples": 4, "compressor": "png", "background": None,
            "prior_levels": 1}


def _arguments(p: argparse.ArgumentParser) -> None:
    run_arguments(p)
    p.add_argument("--data", metavar="NAME|PATH", help="score a named data set's test split, "
                   "or every item of a file or folder in its order (default: the run's test set)")
    p.add_argument("--score", nargs="+", default=["all"], metavar="NAME",
                   help=f"scores to compute: {', '.join(SCORES)} or all (default: all; "
                   "'ratio' only with --background, 'classifier' only for labelled data, "
                   "'combined' only for a run with a validation split)")
    p.add_argument("--out", help="CSV file (default: RUN_DIR/scores.csv)")
    p.add_argument("--ood-data", metavar="NAME|PATH", help="anomalies: this data set's test "
                   "split; reports AUROC, AUPRC, FPR at 95%% TPR and writes figures")
    p.add_argument("--held-out-class", type=int, metavar="K", help="anomalies: the test "
                   "items of class K, left out of training with --exclude-class K")
    p.add_argument("--threshold-quantile", type=float, metavar="Q", help="flag items above "
                   "the Q quantile of each score on the run's validation split; saved with "
                   "the run and applied to later calls")
    p.add_argument("--iw-samples", type=int, metavar="K", help="importance samples for "
                   "-log p(x) in 'iwae' and, when > 0, in every score that reads the NLL "
                   "(default: 0, the -ELBO; 'iwae' then takes 100)")
    p.add_argument("--elbo-samples", type=int, metavar="S", help="draws of z averaged in the "
                   "reconstruction term and in each bound of 'llr' (default: 4)")
    p.add_argument("--compressor", choices=sorted(COMPRESSORS), help="lossless compressor of "
                   "'complexity' (default: png)")
    p.add_argument("--background", metavar="RUN", help="run trained with --perturb, for 'ratio'")
    p.add_argument("--prior-levels", type=int, metavar="K", help="'llr' of a hierarchical "
                   "model: its K lowest levels drawn from the prior (default: 1)")
    p.add_argument("--typicality-batch", type=int, default=25, metavar="M",
                   help="items per batch of the typicality test (default: 25)")
    p.add_argument("--num-images", type=int, metavar="N", help="score the first N items")
    p.add_argument("--json", action="store_true", help="the metrics as one JSON object")


def _settings(args: argparse.Namespace, saved: Optional[Dict]) -> Dict:
    """Flags given now, else those saved with the thresholds, else the defaults."""
    settings = dict(DEFAULTS, **(saved or {}).get("settings", {}))
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    return {**settings, **given}


def _score_names(requested: List[str], background: bool, labelled: bool,
                 validation: bool, hierarchical: bool = False) -> List[str]:
    if requested == ["all"]:
        applies = {"ratio": background, "classifier": labelled, "combined": validation,
                   "llr": hierarchical}
        return [name for name in SCORES if applies.get(name, True)]
    for name in requested:
        if name not in SCORES:
            raise ValueError(f"score: expected names of {', '.join(SCORES)} or all, got {name!r}")
    if "combined" in requested and not validation:
        raise ValueError("score: 'combined' calibrates on the run's validation split; train "
                         "it with --val-fraction (e.g. 0.1)")
    if "ratio" in requested and not background:
        raise ValueError("score: 'ratio' needs a background model: pass --background RUN "
                         "(a run trained with --perturb, e.g. 0.2)")
    return list(dict.fromkeys(requested))


def _items(run: Run, source: Optional[str], num: Optional[int], name: str, data=None):
    """``(x, y)`` to score: a named set's test split (the run's when ``source`` is None,
    from ``data`` when loaded), or every item of a file or folder in its stored order;
    binarised as the run's test set."""
    if source is None or source in DATASETS:
        x, y = test_data(run, argparse.Namespace(data=source, num_images=num), data)
    else:
        x, y = load_items(source, run.config.image_size)
        x, y = x[:num], y[:num]
        if run.config.binarize == "dynamic":
            x = binarize(x, torch.Generator().manual_seed(TEST_BINARIZE_SEED))
        device = next(run.model.parameters()).device
        x, y = x.to(device), y.to(device)
    check_shape(run, x, name)
    return x, y


def _anomalies(run: Run, args: argparse.Namespace, x, y):
    """``(x_in, y_in, x_out, y_out)``, or the scored data and ``None`` without anomalies."""
    if args.held_out_class is not None:
        if args.ood_data:
            raise ValueError("held_out_class: give --ood-data or --held-out-class, not both")
        excluded = tuple(run.config.exclude_class or ())
        if args.held_out_class not in excluded:
            raise ValueError(f"held_out_class: class {args.held_out_class} was not left out of "
                             f"training (this run excluded {list(excluded) or 'none'})")
        normal = ~torch.isin(y, torch.tensor(excluded, device=y.device))
        out = y == args.held_out_class
        return x[normal], y[normal], x[out], y[out]
    if args.ood_data:
        return (x, y, *_items(run, args.ood_data, args.num_images, "ood_data"))
    return x, y, None, None


def _thresholds(args, run: Run, scorer: Scorer, names, validation, settings) -> Dict[str, float]:
    saved = load_thresholds(run.folder)
    if args.threshold_quantile is None:
        return {k: v for k, v in (saved or {}).get("thresholds", {}).items() if k in names}
    scores = scorer.score(*validation, scores=names)
    thresholds = {k: quantile_threshold(v, args.threshold_quantile) for k, v in scores.items()}
    path = save_thresholds(run.folder, args.threshold_quantile, thresholds, settings)
    print(f"thresholds at the {args.threshold_quantile} quantile of {len(validation[0])} "
          f"validation items saved to {path}", file=sys.stderr)
    return thresholds


def _write_csv(path: Path, scores: Dict[str, torch.Tensor], labels: torch.Tensor,
               ood: Optional[torch.Tensor], thresholds: Dict[str, float]) -> None:
    """One row per item: index, label, ``ood`` (when known), scores, ``flag_<score>``."""
    header = ["index", "label"] + (["ood"] if ood is not None else []) + list(scores) + \
        [f"flag_{name}" for name in thresholds]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    columns = [torch.arange(len(labels)).tolist(), labels.tolist()]
    columns += [ood.int().tolist()] if ood is not None else []
    columns += [[f"{v:.6g}" for v in s.tolist()] for s in scores.values()]
    columns += [(scores[k] > t).int().tolist() for k, t in thresholds.items()]
    writer.writerows(zip(*columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def _report(args, out: Path, s_in: Dict[str, torch.Tensor], s_out: Dict[str, torch.Tensor],
            typicality: Optional[Dict]) -> Dict:
    """Print the detection metrics per score and write the histograms and ROC curves."""
    metrics = {name: detection_metrics(s_in[name], s_out[name]) for name in s_in}
    stem = out.with_suffix("")
    base_plots.save(plots.histograms(s_in, s_out), f"{stem}_hist.png")
    base_plots.save(plots.roc_curves(s_in, s_out), f"{stem}_roc.png")
    result = {"metrics": metrics, "typicality": typicality,
              "figures": [f"{stem}_hist.png", f"{stem}_roc.png"]}
    if args.json:
        print(json.dumps(result))
        return result
    print(f"{'score':<12}{'AUROC':>8}{'AUPRC':>8}{'FPR@95':>8}   (anomalies positive)")
    for name, m in metrics.items():
        print(f"{name:<12}{m['auroc']:>8.3f}{m['auprc']:>8.3f}{m['fpr_at_95_tpr']:>8.3f}")
    if typicality:
        print(f"typicality test, batches of {typicality['in']['batch']}: flags "
              f"{typicality['in']['flagged']:.1%} of normal batches, "
              f"{typicality['out']['flagged']:.1%} of anomaly batches")
    print(f"wrote {', '.join(result['figures'])}")
    return result


def _typicality(args, scorer: Scorer, validation, s_in, s_out) -> Optional[Dict]:
    """The batch-level test on the NLL score, when a validation split gives its null."""
    name = "iwae" if "iwae" in s_in and scorer.iw_samples else "elbo"
    if name not in s_in or validation is None or scorer.reference is None:
        return None
    m = args.typicality_batch
    if min(len(s_in[name]), len(s_out[name])) < m:
        return None
    nll_train = scorer.reference.statistics["nll"]
    nll_val = scorer.score(*validation, scores=[name])[name]
    return {"score": name, "in": typicality_test(nll_train, nll_val, s_in[name], m),
            "out": typicality_test(nll_train, nll_val, s_out[name], m)}


def _score(args: argparse.Namespace) -> int:
    if args.threshold_quantile is not None and not 0 < args.threshold_quantile < 1:
        raise ValueError(f"threshold_quantile: expected a share in (0, 1), got {args.threshold_quantile}")
    run = load_run(args)
    settings = _settings(args, load_thresholds(run.folder))
    background = Run.load(settings["background"], args.device).model if settings["background"] else None
    data = prepare_data(run.config)  # loaded once: reference, validation and test items
    reference, validation = normal_splits(run, data=data)
    labelled = bool((reference[1] >= 0).all()) and len(reference[1].unique()) > 1
    names = _score_names(args.score, background is not None, labelled, validation is not None,
                         len(getattr(run.model, "sites", ())) > 1)
    scorer = Scorer(run.model, settings["iw_samples"], settings["elbo_samples"], background,
                    settings["compressor"], prior_levels=settings["prior_levels"])
    if args.threshold_quantile is not None and validation is None:
        raise ValueError("threshold_quantile: the run has no validation split to calibrate "
                         "on; train it with --val-fraction (e.g. 0.1)")
    torch.manual_seed(args.seed)
    x, y = _items(run, args.data, args.num_images, "data", data)
    x_in, y_in, x_out, y_out = _anomalies(run, args, x, y)  # bad flags end here, before work
    if any(SCORES[n].needs_reference for n in names) or x_out is not None:
        scorer.fit(*reference, calibration=validation if "combined" in names else None)
    s_in = scorer.score(x_in, y_in, names)
    thresholds = _thresholds(args, run, scorer, names, validation, settings)
    out = Path(args.out or Path(args.run_dir) / "scores.csv")
    if x_out is None:
        _write_csv(out, s_in, y_in, None, thresholds)
        print(f"wrote {len(x_in)} rows of {', '.join(names)} to {out}")
        return 0
    s_out = scorer.score(x_out, y_out, names)
    both = {k: torch.cat([s_in[k], s_out[k]]) for k in names}
    ood = torch.cat([torch.zeros(len(x_in)), torch.ones(len(x_out))])
    _write_csv(out, both, torch.cat([y_in, y_out]).cpu(), ood, thresholds)
    print(f"wrote {len(ood)} rows of {', '.join(names)} to {out}", file=sys.stderr)
    _report(args, out, s_in, s_out, _typicality(args, scorer, validation, s_in, s_out))
    return 0


SUBCOMMANDS = {
    "score": Subcommand("per-item anomaly scores of a run; AUROC against out-of-distribution "
                        "data; thresholds from normal data", _arguments, _score),
}

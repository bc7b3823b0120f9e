"""Out-of-distribution detection: AUROC of every anomaly score, measured with the CLI.

Three experiments, each a sequence of ``pyro-vae train`` and ``pyro-vae score --json``
commands (the same a user types), each run one JSON line in ``--out``:

- ``fashion``: a VAE trained on Fashion-MNIST (``apt-get install dataset-fashion-mnist``;
  all 60,000 training images, 10% held out for validation) scores its own test set
  (10,000, normal) against mnist-10k's test digits (2,000, anomalies), on grey levels
  (Bernoulli on the intensities, as they are) and ``--binarize dynamic``; ``ratio``
  against a background VAE trained with ``--perturb 0.2`` on the same data; seeds
  ``--seeds``.
- ``heldout``: mnist-10k trained with ``--exclude-class k``, scored with
  ``--held-out-class k`` (the test digits k against the other nine), for each k and seed.
- ``best``: ``fashion`` with ``--net conv``, to show what a better density model changes
  (``--no-background`` skips the background VAE and ``ratio``).
- ``hierarchical``: ``fashion``'s binarised rows with a two-level HVAE (``--model hvae
  --levels 2``), whose scores include ``llr``, the likelihood ratio between its levels
  (Havtorn et al. 2021).

Prints a Markdown table per experiment: AUROC mean ± sd over seeds, or for ``heldout``
over the digits (each the mean of its seeds), and the worst digit. ``--epochs`` and the architecture are the library's defaults
unless given.

    python benchmarks/ood.py fashion --seeds 0 1 2          # docs/anomaly.md, table 1
    python benchmarks/ood.py heldout --epochs 20 --seeds 0 1 2   # table 2
    python benchmarks/ood.py best --no-background          # table 3
    python benchmarks/ood.py hierarchical                  # table 4
    python benchmarks/ood.py hierarchical --hvae-flags='--warmup linear --free-bits 4'
    python benchmarks/ood.py heldout --classes 1 --epochs 1 --num-images 200  # smoke test
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

TRAIN = [sys.executable, "-m", "pyro_vae", "train", "--threads", "1", "--val-fraction", "0.1"]
SCORE = [sys.executable, "-m", "pyro_vae", "score"]


def _call(command) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _train(out: Path, args, *flags) -> Path:
    """Train ``out``, or continue it exactly where a stopped benchmark left it."""
    if (out / "checkpoint.pt").is_file() and not args.retrain:
        _call(TRAIN + ["--resume", out, "--epochs", args.epochs, *flags])
    else:
        _call(TRAIN + ["--epochs", args.epochs, "--out", out, "--overwrite", *flags])
    return out


def _score(run: Path, args, *flags) -> dict:
    extra = ["--num-images", args.num_images] if args.num_images else []
    start = time.perf_counter()
    result = json.loads(_call(SCORE + [run, "--json", "--out", run / "scores.csv", *extra, *flags]))
    result["score_s"] = round(time.perf_counter() - start, 1)
    return result


def fashion(args, conv: bool = False):
    """One row per (pixels, seed): a VAE and its background VAE, scored on MNIST."""
    net = ["--net", "conv"] if conv else []
    for pixels in ("binarised", "grey"):
        binary = ["--binarize", "dynamic"] if pixels == "binarised" else []
        for seed in args.seeds:
            common = ["--dataset", "fashion-mnist", "--seed", seed, *binary, *net]
            name = f"{'conv-' if conv else ''}{pixels}-s{seed}"
            run = _train(args.runs / name, args, *common)
            flags = ["--ood-data", "mnist-10k"]
            if args.background:
                flags += ["--background", _train(args.runs / f"{name}-bg", args, *common,
                                                 "--perturb", "0.2")]
            result = _score(run, args, *flags)
            yield {"experiment": "best" if conv else "fashion", "pixels": pixels,
                   "seed": seed, **result}


def hierarchical(args):
    """One row per seed: a two-level HVAE on binarised Fashion-MNIST, scored on MNIST."""
    for seed in args.seeds:
        flags = shlex.split(args.hvae_flags)
        tag = "".join("-" + f.lstrip("-") for f in flags)
        run = _train(args.runs / f"hvae{tag}-binarised-s{seed}", args, "--dataset",
                     "fashion-mnist", "--seed", seed, "--binarize", "dynamic", "--model", "hvae",
                     "--levels", 2, *flags)
        yield {"experiment": "hierarchical", "pixels": "binarised", "seed": seed,
               **_score(run, args, "--ood-data", "mnist-10k")}


def heldout(args):
    """One row per (held-out digit k of mnist-10k, seed)."""
    for seed in args.seeds:
        for k in args.classes:
            run = _train(args.runs / f"heldout-{k}-s{seed}", args, "--dataset", "mnist-10k",
                         "--exclude-class", k, "--seed", seed)
            yield {"experiment": "heldout", "class": k, "seed": seed,
                   **_score(run, args, "--held-out-class", k)}


def _mean_sd(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows) -> str:
    """AUROC per score: one column per pixel kind (fashion, best) or mean/worst (heldout)."""
    names = list(rows[0]["metrics"])
    if rows[0]["experiment"] == "heldout":
        seeds = len({r["seed"] for r in rows})
        lines = [f"| score | mean AUROC over digits (each the mean of {seeds} seeds) | "
                 "worst digit (AUROC) |", "| --- | --- | --- |"]
        for n in names:
            by_class = {k: statistics.mean(r["metrics"][n]["auroc"] for r in rows
                                           if r["class"] == k) for k in {r["class"] for r in rows}}
            worst = min(by_class, key=by_class.get)
            lines.append(f"| {n} | {_mean_sd(list(by_class.values()))} | {worst} "
                         f"({by_class[worst]:.3f}) |")
        return "\n".join(lines)
    kinds = sorted({r["pixels"] for r in rows})
    lines = ["| score | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds)]
    for n in names:
        cells = [_mean_sd([r["metrics"][n]["auroc"] for r in rows if r["pixels"] == k])
                 for k in kinds]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", choices=("fashion", "heldout", "best", "hierarchical"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--num-images", type=int, default=0, help="score the first N items only")
    p.add_argument("--runs", type=Path, default=Path("runs/bench/ood"))
    p.add_argument("--no-background", dest="background", action="store_false",
                   help="skip the background VAE and the 'ratio' score")
    p.add_argument("--retrain", action="store_true", help="train again over existing runs")
    p.add_argument("--hvae-flags", default="", metavar="FLAGS",
                   help="more training flags of the hierarchical experiment's HVAE, as one "
                   "string: --hvae-flags='--warmup linear --free-bits 2'")
    p.add_argument("--out", type=Path, help="JSON lines (default: RUNS/EXPERIMENT.jsonl)")
    args = p.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    out = args.out or args.runs / f"{args.experiment}.jsonl"
    source = {"fashion": lambda: fashion(args), "best": lambda: fashion(args, conv=True),
              "heldout": lambda: heldout(args),
              "hierarchical": lambda: hierarchical(args)}[args.experiment]
    rows = []
    with open(out, "w") as f:
        for row in source():
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps({k: v for k, v in row.items() if k != "figures"}), file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main()

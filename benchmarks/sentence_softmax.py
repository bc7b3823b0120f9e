"""The adaptive softmax against the full one: training tokens per second on PTB.

The sentence VAE (``warmup-fb``'s network: GRU of 256 units, 256-d embeddings, z of 32,
decoder dropout 0.5, free bits 0.25) and its language model, each with the full
``256 x V`` softmax layer and with the adaptive one (``--softmax adaptive``, default
cutoffs), train one epoch on the same seeded PTB sentences, the four runs interleaved
``--repeats`` times in one process so that all of them meet the same machine. Prints
tokens per second of each (mean and spread over the repeats) and the ratio adaptive /
full of each model::

    OMP_NUM_THREADS=1 python benchmarks/sentence_softmax.py --sentences 1500 --repeats 3

What the speed costs in NLL is measured by ``benchmarks/sentence.py --softmax adaptive``
(docs/text.md).
"""

import argparse
import statistics
import time

import pyro
import torch

from pyro_vae import fit
from pyro_vae.models import SentenceVAE
from pyro_vae.text import load_text
from pyro_vae.text.vocab import lengths

MODELS = {"lm": {"language_model": True}, "vae": {"free_bits": 0.25}}


def tokens_per_second(name: str, softmax: str, data, x: torch.Tensor, seed: int) -> float:
    pyro.clear_param_store()
    torch.manual_seed(seed)
    model = SentenceVAE(data.vocab, z_dim=32, embed_dim=256, hidden_size=256, dropout=0.5,
                        softmax=softmax, **MODELS[name])
    start = time.perf_counter()
    fit(model.model, model.guide, x, epochs=1, batch_size=32, batches=model.batching(32),
        clip_norm=5.0, seed=seed, progress=False)
    return int(lengths(x).sum()) / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="ptb")
    p.add_argument("--sentences", type=int, default=1500, help="training sentences timed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = load_text(args.data, max_vocab=None, seed=args.seed)
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(args.seed))
    x = data.x_train[pick[:args.sentences]]
    print(f"{len(x)} sentences, {int(lengths(x).sum())} tokens, {len(data.vocab)} words, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    speeds = {(name, softmax): [] for name in MODELS for softmax in ("full", "adaptive")}
    for key in speeds:  # untimed: the first call of each pays for allocations
        tokens_per_second(*key, data, x[:64], args.seed)
    for repeat in range(args.repeats):
        for key in speeds:
            speeds[key].append(tokens_per_second(*key, data, x, args.seed + repeat))
            print(f"repeat {repeat + 1}: {key[0]} {key[1]}: {speeds[key][-1]:.0f} tokens/s",
                  flush=True)
    print("\n| model | softmax | tokens/s | spread | adaptive / full |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (name, softmax), values in speeds.items():
        ratio = statistics.mean(values) / statistics.mean(speeds[name, "full"])
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {name} | {softmax} | {statistics.mean(values):.0f} | {spread:.0f} | "
              f"{ratio:.2f} |")


if __name__ == "__main__":
    main()

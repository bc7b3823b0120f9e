"""A sentence VAE (Bowman et al. 2016) through the Python API: train, measure, decode.

    python examples/sentence_vae.py                          # the offline toy corpus
    python examples/sentence_vae.py --data ptb --epochs 5 --softmax adaptive   # Penn Treebank

Trains with a linear KL warm-up, word dropout and free bits, then prints the test
bound, the importance-weighted NLL and perplexity, the KL, the mutual information and
the active units, sentences decoded from the prior, and a homotopy between two test
sentences.
"""

import argparse

import torch

from pyro_vae import fit
from pyro_vae.evaluate import evaluation_report
from pyro_vae.explore import latent_path
from pyro_vae.models import SentenceVAE
from pyro_vae.schedules import KLWarmup, Linear
from pyro_vae.text import load_text
from pyro_vae.text.nets import SOFTMAXES
from pyro_vae.text.report import perplexities


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="toy", help="toy, ptb or a text file (one sentence a line)")
    p.add_argument("--train-size", type=int, help="training sentences (default: all)")
    p.add_argument("--test-size", type=int, default=500, help="test sentences evaluated")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--word-dropout", type=float, default=0.3)
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=float, default=3)
    p.add_argument("--iw-samples", type=int, default=50)
    p.add_argument("--softmax", choices=SOFTMAXES, default="full",
                   help="the decoder's softmax layer (adaptive: several times faster on 10k words)")
    args = p.parse_args(argv)

    data = load_text(args.data, train_size=args.train_size)
    vae = SentenceVAE(data.vocab, z_dim=args.z_dim, embed_dim=args.embed_dim,
                      hidden_size=args.hidden_size, word_dropout=args.word_dropout,
                      free_bits=args.free_bits, softmax=args.softmax)
    fit(vae.model, vae.guide, data.x_train, epochs=args.epochs, batch_size=32,
        batches=vae.batching(32), step_hooks=[KLWarmup(vae, Linear(args.warmup_epochs))])

    vae.eval()
    x = data.x_test[:args.test_size]
    report = evaluation_report(vae.model, vae.guide, x, iw_samples=args.iw_samples)
    report.update(perplexities(report, x))
    print(f"test: -ELBO {report['test_loss']:.2f}  NLL {report['nll']:.2f} (K = "
          f"{args.iw_samples})  PPL {report['ppl']:.1f}  KL {report['kl']:.2f}  "
          f"MI {report['mutual_information']:.2f}  active units {report['active_units']}")
    torch.manual_seed(0)
    print("\nsentences from the prior (greedy):")
    for sentence in vae.sentences(vae.generate(5)):
        print("  " + sentence)
    z = vae.encode(x[:2])
    print("\nhomotopy between two test sentences:")
    for sentence in vae.sentences(vae.decode(latent_path(z[0], z[1], 5))):
        print("  " + sentence)


if __name__ == "__main__":
    main()

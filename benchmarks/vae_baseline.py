"""The plain VAE at the reference settings: test loss, seconds per epoch, images per second.

    python benchmarks/vae_baseline.py                      # mnist-10k, both ELBOs, 3 seeds
    python benchmarks/vae_baseline.py --dataset fashion-mnist --epochs 1 --seeds 0

Settings: batch 128, z 50, one hidden layer of 400 ReLU units, Adam 1e-3, Bernoulli
likelihood on intensities in [0, 1]. The test loss is the negative ELBO per test image
(nats) after the last epoch, with the closed-form KL.
"""

import argparse
import platform
import statistics
import tempfile

import torch

from pyro_vae import TrainConfig, train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-10k")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--elbos", default="TraceMeanField_ELBO,Trace_ELBO")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, {args.dataset}, {args.epochs} epochs")
    print(f"{'elbo':<20} {'seed':>4} {'test loss':>9} {'recon':>7} {'kl':>6} {'s/epoch':>8} {'img/s':>8}")
    for elbo in args.elbos.split(","):
        losses = []
        for seed in map(int, args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as out:
                config = TrainConfig.for_model(
                    "vae", data=args.dataset, epochs=args.epochs, batch_size=128, z_dim=50,
                    hidden=(400,), activation="relu", elbo=elbo, seed=seed, out=out,
                    device="cpu")
                _, history = train(config, overwrite=True)
            last = history[-1]
            num_images = last["images_per_s"] * last["epoch_s"]
            # the first epoch carries one-off start-up costs: report the median of the rest
            epoch_s = statistics.median(r["epoch_s"] for r in history[1:] or history)
            losses.append(last["test_loss"])
            print(f"{elbo:<20} {seed:>4} {last['test_loss']:>9.2f} {last['recon']:>7.2f} "
                  f"{last['kl']:>6.2f} {epoch_s:>8.3f} {num_images / epoch_s:>8.0f}")
        if len(losses) > 1:
            print(f"{elbo:<20} mean {statistics.mean(losses):>9.2f}  (sd {statistics.stdev(losses):.2f})")


if __name__ == "__main__":
    main()

"""What `sample`, `reconstruct` and `interpolate` print for a run of a text model.

Sentences are printed one a line on stdout (and written to ``--out FILE.txt`` when
given); ``--decode`` picks greedy decoding, sampling at ``--temperature`` (from the
nucleus ``--top-p``) or beam search of ``--beam-width``, and ``--no-repeat-ngram N`` keeps
any N-gram from occurring twice in a sentence (:mod:`pyro_vae.text.decoding`).
"""

import argparse
import sys
from pathlib import Path
from typing import List

import torch

from .. import explore, runs
from ..models import model_class
from ..models.sentence import DECODERS
from ..text import decoding
from . import Subcommand, load_run, test_data


def decode_arguments(p: argparse.ArgumentParser) -> None:
    """``--decode``, ``--temperature``, ``--top-p``, ``--beam-width`` and
    ``--no-repeat-ngram`` (text models only)."""
    group = p.add_argument_group("text models")
    group.add_argument("--decode", default="greedy", choices=DECODERS,
                       help="how sentences are decoded from codes (default: greedy)")
    group.add_argument("--temperature", type=float, default=1.0,
                       help="softmax temperature of --decode sample (default: 1)")
    group.add_argument("--top-p", type=float, default=1.0,
                       help="--decode sample draws from the most probable words whose "
                       "probabilities sum to at least this (nucleus sampling; default: 1, "
                       "all words)")
    group.add_argument("--beam-width", type=int, default=5,
                       help="beams of --decode beam (default: 5)")
    group.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                       help="no N-gram occurs twice in a decoded sentence (default: 0, "
                       "no limit)")


def decode_options(args: argparse.Namespace) -> dict:
    """The decoding flags as :meth:`SentenceVAE.decode`'s keywords, checked before any
    run is loaded."""
    options = {"temperature": args.temperature, "width": args.beam_width,
               "top_p": args.top_p, "no_repeat_ngram": args.no_repeat_ngram}
    decoding.check_options(**options)
    return {"method": args.decode, **options}


def is_text_run(run_dir) -> bool:
    """Whether the run in ``run_dir`` is of a model of text (read from its config); False
    where there is no readable run, which loading it then reports."""
    try:
        name = runs.read_config(run_dir).get("model", "vae")
    except (OSError, ValueError):
        return False
    return model_class(name).data_kind == "text"


def _emit(lines: List[str], out) -> None:
    print("\n".join(lines))
    if out:
        path = Path(out)
        if path.suffix != ".txt":
            raise ValueError(f"out: expected a file ending in .txt for sentences, got "
                             f"{path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


def sample(args: argparse.Namespace) -> int:
    """Sentences decoded from ``--num`` prior draws."""
    options = decode_options(args)
    run = load_run(args)
    torch.manual_seed(args.seed)
    _emit(run.model.sentences(run.model.generate(args.num, **options)), args.out)
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    """The first ``--num`` test sentences, each followed by its decode (``>``)."""
    options = decode_options(args)
    run = load_run(args)
    x, _ = test_data(run, args)
    torch.manual_seed(args.seed)
    model = run.model
    lines = []
    for source, again in zip(model.sentences(x), model.sentences(model.reconstruct(x, **options))):
        lines += [f"  {source}", f"> {again}"]
    _emit(lines, args.out)
    return 0


def _sentence_codes(model, texts: List[str]) -> torch.Tensor:
    unknown = sorted({w for t in texts for w in t.split() if w not in model.vocab.index})
    if unknown:
        print(f"not in the vocabulary, read as <unk>: {' '.join(unknown)}", file=sys.stderr)
    if not all(t.split() for t in texts):
        raise ValueError("from: expected two non-empty sentences")
    return model.encode(model.tensor(texts))


def interpolate(args: argparse.Namespace) -> int:
    """The homotopy of Bowman et al. (2016, table 8): sentences decoded along the path
    between the posterior means of ``--from`` and ``--to``."""
    options = decode_options(args)
    if args.steps < 2:
        raise ValueError(f"steps: expected at least 2 codes on the path, got {args.steps}")
    run = load_run(args)
    z = _sentence_codes(run.model, [args.start, args.end])
    torch.manual_seed(args.seed)
    path = explore.latent_path(z[0], z[1], args.steps, args.path)
    decoded = run.model.sentences(run.model.decode(path, **options))
    _emit([f"{t:.2f}  {s}" for t, s in zip(torch.linspace(0, 1, args.steps).tolist(), decoded)],
          args.out)
    return 0


def text_or_images(image_command: Subcommand, help: str) -> Subcommand:
    """``interpolate`` for both kinds of run: ``--from``/``--to`` are sentences for a text
    model and test-image indices otherwise (``image_command``'s own behaviour)."""

    def add_arguments(p: argparse.ArgumentParser) -> None:
        image_command.add_arguments(p)
        for action in p._actions:  # sentences as well as indices
            if action.dest in ("start", "end"):
                action.type, action.metavar = str, "I|SENTENCE"
        decode_arguments(p)

    def run(args: argparse.Namespace) -> int:
        if is_text_run(args.run_dir):
            return interpolate(args)
        for flag, dest in (("from", "start"), ("to", "end")):
            try:
                setattr(args, dest, int(getattr(args, dest)))
            except ValueError:
                raise ValueError(f"{flag}: expected a test-image index, got "
                                 f"{getattr(args, dest)!r}") from None
        return image_command.run(args)

    return Subcommand(help, add_arguments, run)


def images_only(name: str, command: Subcommand) -> Subcommand:
    """``command`` refusing, in one line, a run of a text model (it draws or scores images)."""

    def run(args: argparse.Namespace) -> int:
        run_dir = getattr(args, "run_dir", None)
        if isinstance(run_dir, (str, Path)) and is_text_run(run_dir):
            raise ValueError(f"{name}: works on images; {run_dir} is a run of a text model "
                             "(try sample, reconstruct, interpolate or evaluate)")
        return command.run(args)

    return Subcommand(command.help, command.add_arguments, run)

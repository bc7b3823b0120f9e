"""The command-line reference as Markdown, walked from ``pyro_vae.cli.build_parser()``.

One section per subcommand (and per nested subcommand, one heading level down): its
description, its usage and its options by ``--help`` group. Options that only some
models add (``pyro-vae train --model m2``) are listed after the defaults. Nothing here
imports Sphinx, so the tests can check the text without the docs extra installed.
"""

import argparse
import re
from typing import Callable, Dict, Iterator, List, Optional, Tuple

WIDTH = 88  # usage lines wrap here whatever the terminal is

_CODE = re.compile(r"(`[^`\n]+`)")
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#+!|$~^&])")


def escape(text: str) -> str:
    """``text`` as literal Markdown: `code` spans kept, every other special character
    escaped (``$`` would start math, ``{`` a role, ``*`` emphasis)."""
    text = " ".join(text.split())
    return "".join(part if _CODE.fullmatch(part) else _SPECIAL.sub(r"\\\1", part)
                   for part in _CODE.split(text))


def subcommands(parser: argparse.ArgumentParser) -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """``(name, parser)`` of each subcommand of ``parser``, in registry order; an alias
    of one already seen is skipped."""
    seen = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, sub


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _documented(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) \
        and action.help != argparse.SUPPRESS


def option_item(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """A definition-list item: the flags (with their metavar), then the expanded help."""
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    invocation = formatter._format_action_invocation(action)
    help_text = formatter._expand_help(action) if action.help else ""
    return f"`{invocation}`\n: {escape(help_text) or '(no description)'}\n"


def option_groups(parser: argparse.ArgumentParser) -> List[Tuple[str, List[argparse.Action]]]:
    """``(title, actions)`` of each ``--help`` group that documents something."""
    groups = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if _documented(a)]
        if actions:
            groups.append((group.title or "options", actions))
    return groups


def _flags(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if _documented(a)}


def section(name: str, parser: argparse.ArgumentParser, level: int,
            variants: Dict[str, argparse.ArgumentParser]) -> List[str]:
    """The Markdown of one subcommand; ``variants`` maps a model name to this same
    subcommand's parser as ``build_parser(model)`` makes it."""
    lines = [f"{'#' * level} `{parser.prog}`", ""]
    if parser.description:
        lines += [escape(parser.description), ""]
    lines += ["```text", usage(parser), "```", ""]
    for title, actions in option_groups(parser):
        lines += [f"**{escape(title)}**", ""]
        lines += [option_item(parser, a) for a in actions]
    base = _flags(parser)
    for model, other in variants.items():
        extra = [a for dest, a in _flags(other).items() if dest not in base]
        if extra:
            lines += [f"**with `--model {model}`, also**", ""]
            lines += [option_item(other, a) for a in extra]
    for child, sub in subcommands(parser):
        lines += section(child, sub, level + 1, _children(variants, child))
    return lines


def _children(variants: Dict[str, argparse.ArgumentParser], name: str):
    return {m: dict(subcommands(p))[name] for m, p in variants.items()
            if name in dict(subcommands(p))}


def reference(build: Optional[Callable[..., argparse.ArgumentParser]] = None,
              models: Optional[List[str]] = None, level: int = 2) -> str:
    """The whole reference: the tool's own options, then one section per subcommand.

    :param build: ``build_parser``, called once bare and once per name in ``models``.
    :param models: model names whose subcommand parsers may add options (default: the
        keys of ``pyro_vae.models.MODELS`` but the first, which is the bare parser's).
    :param level: Markdown heading level of a subcommand's section.
    """
    if build is None:
        from pyro_vae.cli import build_parser as build
    if models is None:
        from pyro_vae.models import MODELS
        models = list(MODELS)[1:]
    parser = build()
    others = {m: build(m) for m in models}
    lines = ["```text", usage(parser), "```", ""]
    for _, actions in option_groups(parser):
        lines += [option_item(parser, a) for a in actions]
    for name, sub in subcommands(parser):
        variants = {m: dict(subcommands(p))[name] for m, p in others.items()
                    if name in dict(subcommands(p))}
        lines += section(name, sub, level, variants)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # print it: python docs/_ext/cli_reference.py
    print(reference())

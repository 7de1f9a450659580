"""The ``infodyn`` command. Each module in this package adds one subcommand.

A subcommand module defines ``add_parser(subparsers)``, which adds its parser and sets
``func=callable(args) -> int`` (the exit code) with ``set_defaults``. Modules are found by
name, so adding a subcommand touches no shared file. Every option's help shows its default
(:class:`HelpFormatter`), and ``infodyn --help`` lists the three commands a newcomer needs first.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional

#: Subcommands listed first, in this order (a newcomer's path); the others follow by name.
FIRST = ("demo", "init", "analyze", "plot")

DESCRIPTION = """\
Information-theoretic analysis of deep-network training: the information plane, transferability
and over-compression of every checkpoint and layer of a training run.

Start here:
  infodyn demo
      train small networks on bundled data, analyse them and write infodyn_demo/report.html
  infodyn init RUN_DIR --model MODULE:CALLABLE --source DATA [--target DATA] [--layers LAYER ...]
      describe a folder of your checkpoints (writes RUN_DIR/infodyn.yaml)
  infodyn analyze RUN_DIR --out OUT
      measure every checkpoint and layer; writes OUT/results.csv, the figures and OUT/report.html

`infodyn COMMAND --help` describes each command and all of its options."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to every option whose default means something (not None, not a
    False flag) and whose help does not state its default already; lists print space-separated."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        if isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _order(name: str):
    return (FIRST.index(name) if name in FIRST else len(FIRST), name)


def build_parser() -> argparse.ArgumentParser:
    from infodyn import __version__

    parser = argparse.ArgumentParser(prog="infodyn", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"infodyn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    for name in sorted(names, key=lambda n: _order(n.replace("_", "-"))):
        module = importlib.import_module(f"{__name__}.{name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    for p in sub.choices.values():
        p.formatter_class = HelpFormatter
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"infodyn {args.command}: error: {exc}", file=sys.stderr)
        return 2

"""The ``infodyn`` command. Each module in this package adds one subcommand.

A subcommand module defines ``add_parser(subparsers)``, which adds its parser and sets
``func=callable(args) -> int`` (the exit code) with ``set_defaults``. Modules are found by
name, so adding a subcommand touches no shared file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    from infodyn import __version__

    parser = argparse.ArgumentParser(
        prog="infodyn",
        description="Information-theoretic analysis of deep-network training.",
    )
    parser.add_argument("--version", action="version", version=f"infodyn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
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



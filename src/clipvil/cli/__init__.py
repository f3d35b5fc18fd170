"""`clipvil ...`: parse, build, call. One small function per sub-command, grouped by kind in cli/data.py,
cli/runs.py and cli/apps.py; the work lives in the library."""

from __future__ import annotations

import argparse
import logging
import sys

import clipvil
from clipvil.cli import apps, data, runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipvil", description="CLIP-ViL: CLIP as the visual encoder of V&L models")
    parser.add_argument("--version", action="version", version=f"clipvil {clipvil.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_extract(sub)
    data.add_make_data(sub)
    data.add_make_corpus(sub)
    data.add_import_views(sub)
    data.add_make_nav_world(sub)
    runs.add_training(sub)
    data.add_score(sub)
    runs.add_demo(sub)
    runs.add_card(sub)
    runs.add_export_clip(sub)
    runs.add_ship_tower(sub)
    runs.add_study(sub)
    apps.add_serve(sub)
    apps.add_explain(sub)
    apps.add_localise(sub)
    return parser


# a user's mistake (bad file, option, config, data): one line, no traceback
USER_ERRORS = (ValueError, KeyError, OSError, RuntimeError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[clipvil] %(message)s")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"clipvil {args.command}: error: {message}", file=sys.stderr)
        return 2


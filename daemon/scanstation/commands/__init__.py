"""The command line's sub-commands beyond the daemon: devices and hid-replay (devices.py),
the fleet table (fleet.py), analytics reports (report.py), the on-device checks (doctor.py)
and the benchmarks (bench/).
They sit on top and may import anything; nothing imports them but cli.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanstation.config import Config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CommandLineError(Exception):
    """A sub-command given something it cannot use (exit 2)."""


def run_with_config(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    run: Callable[[argparse.Namespace, Config], int],
) -> int:
    """The frame of every sub-command that owns its arguments (user, backup, restore, db,
    report, collector): parse `argv` (--help is 0, bad usage 2), load the configuration
    `--config` names (a bad one is exit 2, naming the file and key), then `run(args, config)`.
    A `CommandLineError` raised by `run` is bad usage too: exit 2 with its message.
    """
    from scanstation.config import ConfigError, load_config

    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"scanstation {prog}: bad config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run(args, config)
    except CommandLineError as exc:
        print(f"scanstation {prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE

"""Command lines generated from config dataclasses with draccus, the way ``lerobot-train`` does.

``parse_cli(Cls, argv, prog)`` turns every field of the dataclass ``Cls`` into ``--field=value``
and every nested dataclass field into ``--group.field=value`` (values are YAML: ``--x=[1,2]``,
``--flag=true``); ``--config_path=FILE`` (YAML or JSON, nested like the dataclass) sets the
starting values and command-line flags override it. A bad flag, value or file ends the program
with one line on stderr (``prog: error: ...``) and exit status 2; ``--help`` lists the fields.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TypeVar

import draccus
import yaml
from draccus.argparsing import ArgumentParser
from draccus.utils import DecodingError, DraccusException, ParsingError

T = TypeVar("T")

CLI_ERRORS = (DraccusException, argparse.ArgumentError, ValueError, TypeError, OSError, yaml.YAMLError)


def fail(prog: str, err: BaseException | str) -> None:
    """Exit 2 with ``prog: error: <one line>``; a dataclass's own validation error is shown, not draccus's wrapper."""
    if isinstance(err, ParsingError) and not isinstance(err, DecodingError) and isinstance(err.__cause__, ValueError):
        err = err.__cause__
    print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
    raise SystemExit(2)


def parse_cli(cls: type[T], argv: list[str] | None, prog: str, description: str | None = None) -> T:
    """The ``cls`` instance that ``argv`` (default ``sys.argv[1:]``) describes; see the module docstring."""
    usage = f"{prog} [-h] [--config_path=FILE] [--FIELD=VALUE] [--GROUP.FIELD=VALUE] ..."
    parser = ArgumentParser(cls, prog=prog, usage=usage, description=description, exit_on_error=False)
    try:
        return parser.parse_args(argv)
    except CLI_ERRORS as err:
        fail(prog, err)


def to_json(config) -> str:
    """The config as indented JSON (valid YAML too: it can be fed back with ``--config_path``)."""
    return json.dumps(draccus.encode(config), indent=2, sort_keys=True)

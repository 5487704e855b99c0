# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Command lines generated from config dataclasses with draccus, the way ``lerobot-train`` does.

``parse_cli(Cls, argv, prog)`` turns every field of the dataclass ``Cls`` into ``--field=value``
and every nested dataclass field into ``--group.field=value`` (values are YAML: ``--x=[1,2]``,
``--flag=true``); ``--config_path=FILE`` (YAML or JSON, nested like the dataclass) sets the
starting values and command-line flags override it. The value of a ``str`` field is taken as
written (``--instruction=yes`` is the text "yes", not YAML's true; ``null`` still gives None where
the field may be None). A bad flag, value or file ends the program with one line on stderr
(``prog: error: ...``) and exit status 2; ``--help`` lists the fields with their comments (also
those of a config's second base class, which draccus's own lookup misses).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from typing import TypeVar

import draccus
import yaml
from draccus.argparsing import ArgumentParser
from draccus.utils import DecodingError, DraccusException, ParsingError
from draccus.wrappers import docstring

T = TypeVar("T")

POSITIONAL_HINT = "no positional arguments: write --FIELD=VALUE, a list as --FIELD=[a,b]"
CLI_ERRORS = (DraccusException, argparse.ArgumentError, ValueError, TypeError, OSError, yaml.YAMLError)


def _field_help_where_declared(lookup):
    """Wrap draccus's field-comment lookup to read the class that declares the field.

    draccus walks only the first base of each class, so the comments of a second base's fields were lost.
    """
    def get_attribute_docstring(cls: type, field_name: str):
        owner = next((c for c in inspect.getmro(cls) if field_name in vars(c).get("__annotations__", {})), cls)
        return lookup(owner, field_name)

    return get_attribute_docstring


docstring.get_attribute_docstring = _field_help_where_declared(docstring.get_attribute_docstring)


def error_line(err: BaseException | str) -> str:
    """``err`` on one line; a dataclass's own validation error, not draccus's "Couldn't instantiate" around it."""
    if isinstance(err, ParsingError) and not isinstance(err, DecodingError) and isinstance(err.__cause__, ValueError):
        err = err.__cause__
    return " ".join(str(err).split())


def fail(prog: str, err: BaseException | str) -> None:
    """Exit 2 with ``prog: error: <one line>`` (:func:`error_line`)."""
    print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
    raise SystemExit(2)


def _fields(cls: type, prefix: str = "") -> dict[str, typing.Any]:
    """{``--flag``: type} of the fields of ``cls`` and of its nested dataclasses (``--group.field``)."""
    out = {}
    for f, tp in ((f, typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls) if f.init):
        if dataclasses.is_dataclass(tp):
            out.update(_fields(tp, f"{prefix}{f.name}."))
        else:
            out[f"--{prefix}{f.name}"] = tp
    return out


def _text_fields(cls: type) -> dict[str, bool]:
    """{``--flag``: may be None} of the ``str`` and ``str | None`` fields of ``cls`` and its nested dataclasses."""
    out = {}
    for flag, tp in _fields(cls).items():
        args = set(typing.get_args(tp)) if typing.get_origin(tp) in (typing.Union, types.UnionType) else {tp}
        if args - {type(None)} == {str}:
            out[flag] = type(None) in args
    return out


def _hint(cls: type, message: str, renamed: dict[str, str]) -> str:
    """Return a hint for an argparse-style spelling (``--work-dir``, ``--quiet``, a positional) in ``message``."""
    flags, tips = _fields(cls), []
    if message.startswith("unrecognized arguments: "):
        previous = ""
        for token in message.removeprefix("unrecognized arguments: ").split():
            flag = token.partition("=")[0]
            new = renamed.get(flag) or "--" + flag.lstrip("-").replace("-", "_")
            if flag.startswith("-") and (flag in renamed or new in flags):
                tips.append(f"{flag} is now {new}{'=true' if flags.get(new) is bool and '=' not in token else ''}")
            elif not flag.startswith("-") and not previous.startswith("-") and POSITIONAL_HINT not in tips:
                tips.append(POSITIONAL_HINT)  # a word that is not the value of a flag before it
            previous = token
    elif bare := re.match(r"argument (--\S+): expected one argument", message):
        if flags.get(bare[1]) is bool:
            tips.append(f"a switch is written {bare[1]}=true")
    elif (word := re.match(r"`([\w.]+)`: ", message)) and "is not of a valid input for a list type" in message:
        tips.append(f"a list is written --{word[1]}=[a,b]")
    return f" ({'; '.join(tips)})" if tips else ""


def _quote_text(cls: type, argv: list[str]) -> list[str]:
    """``argv`` with the values of text fields written as YAML strings: draccus's YAML reading keeps them as typed."""
    text, out = _text_fields(cls), list(argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag not in text:
            continue
        if not eq:  # --flag VALUE
            if i + 1 >= len(out) or out[i + 1].startswith("--"):
                continue
            i, value = i + 1, out[i + 1]
        if not (text[flag] and value == "null"):
            out[i] = (f"{flag}=" if eq else "") + json.dumps(value)
    return out


def parse_cli(cls: type[T], argv: list[str] | None, prog: str, description: str | None = None,
              renamed: dict[str, str] | None = None) -> T:
    """Return the ``cls`` instance that ``argv`` (default ``sys.argv[1:]``) describes; see the module docstring.

    ``renamed`` maps a former flag that is not just ``--a-b`` for ``--a_b`` (``-o``, ``--no-memory``) to its
    new spelling, for the error's hint.
    """
    usage = f"{prog} [-h] [--config_path=FILE] [--FIELD=VALUE] [--GROUP.FIELD=VALUE] ..."
    parser = ArgumentParser(cls, prog=prog, usage=usage, description=description, exit_on_error=False)
    try:
        return parser.parse_args(_quote_text(cls, sys.argv[1:] if argv is None else argv))
    except CLI_ERRORS as err:
        hint = _hint(cls, str(err), renamed or {})
        fail(prog, f"{err}{hint}" if hint else err)


def check_choice(flag: str, value, choices) -> None:
    """Raise ValueError unless ``value`` is one of ``choices`` (for a config's ``__post_init__``)."""
    if value not in choices:
        raise ValueError(f"{flag} must be one of {', '.join(map(str, choices))}, got {value!r}")


def to_json(config) -> str:
    """Return the config as indented JSON (valid YAML too: it can be fed back with ``--config_path``)."""
    return json.dumps(draccus.encode(config), indent=2, sort_keys=True)

# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma_model.cli: text fields taken as written, ``--field value`` as ``--field=value``, choices, help."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sigma_model.cli import check_choice, parse_cli
from sigma_model.testing import cli_error


@dataclass
class Inner:
    name: str = "x"
    size: int = 1


@dataclass
class Example:
    text: str | None = None
    mode: str = "a"
    count: int = 3
    on: bool = False
    names: list[str] | None = None
    inner: Inner = field(default_factory=Inner)
    max_count: int = 9
    on_fire: bool = False
    letters: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("--mode", self.mode, ("a", "b", "yes"))


@pytest.mark.parametrize("argv, expected", [
    (["--text=yes"], {"text": "yes"}),  # YAML would read yes as true
    (["--text=pick: up"], {"text": "pick: up"}),  # ... and this as a mapping
    (["--text=[1, 2]", "--mode=yes"], {"text": "[1, 2]", "mode": "yes"}),
    (["--text", "no", "--count", "5"], {"text": "no", "count": 5}),  # the space form
    (["--text=007"], {"text": "007"}),
    (["--text=null"], {"text": None}),  # may be None: YAML's null
    (["--text="], {"text": ""}),
    (["--inner.name=on", "--inner.size=2"], {"inner": Inner(name="on", size=2)}),
    (["--on=true", "--names=[a,b]"], {"on": True, "names": ["a", "b"]}),
])
def test_values(argv, expected):
    cfg = parse_cli(Example, argv, "example")
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_null_is_text_where_the_field_may_not_be_none():
    assert parse_cli(Inner, ["--name=null"], "example").name == "null"


@pytest.mark.parametrize("argv, message", [
    (["--mode=c"], "example: error: --mode must be one of a, b, yes, got 'c'"),
    (["--count=x"], "example: error: `count`: Couldn't parse 'x' into an int"),
    (["--on"], "example: error: argument --on: expected one argument (a switch is written --on=true)"),
    (["--unknown=1"], "example: error: unrecognized arguments: --unknown=1"),
    # former argparse spellings: a hint on the same line
    (["--max-count=2"], "example: error: unrecognized arguments: --max-count=2 (--max-count is now --max_count)"),
    (["--on-fire"], "example: error: unrecognized arguments: --on-fire (--on-fire is now --on_fire=true)"),
    (["-c", "2"], "example: error: unrecognized arguments: -c 2 (-c is now --count)"),
    (["--count", "1", "2"], "example: error: unrecognized arguments: 2 (no positional arguments: write --FIELD=VALUE, "
                            "a list as --FIELD=[a,b])"),
    (["--mode=b", "file.txt"], "example: error: unrecognized arguments: file.txt (no positional arguments: write "
                               "--FIELD=VALUE, a list as --FIELD=[a,b])"),
])
def test_refusals_are_one_line_and_exit_2(argv, message, capsys):
    assert cli_error(lambda a: parse_cli(Example, a, "example", renamed={"-c": "--count"}), argv, capsys) == message


def test_a_list_written_as_a_word_gets_the_list_form(capsys):
    line = cli_error(lambda a: parse_cli(Example, a, "example"), ["--letters", "a", "b"], capsys)
    assert line.startswith("example: error: unrecognized arguments: b (no positional arguments")
    line = cli_error(lambda a: parse_cli(Example, a, "example"), ["--letters", "a"], capsys)
    assert line.startswith("example: error: `letters`: ") and line.endswith("(a list is written --letters=[a,b])")


@dataclass
class First:
    alpha: int = 1  # the first base's field


@dataclass
class Second:
    beta: int = 2  # the second base's field


@dataclass
class Both(First, Second):
    gamma: int = 3  # the class's own field


def test_help_shows_the_comments_of_every_base(capsys):
    with pytest.raises(SystemExit):
        parse_cli(Both, ["--help"], "example")
    text = " ".join(capsys.readouterr().out.split())
    for comment in ("the first base's field", "the second base's field", "the class's own field"):
        assert comment in text


def test_parsing_a_command_line_does_not_import_torch():
    """Sigma_model's top-level names load on first use.

    Light commands (sigma-instruct, sigma-graph's supervisor, the Feetech emulator) parse their flags without torch.
    """
    import subprocess
    import sys

    code = ("import sys, sigma_model, sigma_model.cli; assert 'torch' not in sys.modules, 'torch imported'; "
            "from sigma_model import SigmaConfig; assert SigmaConfig.__module__ == 'sigma_model.configuration_sigma'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

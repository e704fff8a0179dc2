"""docs/cli.md names every option of every sub-command (parsed from trajplan.cli's argparse parsers)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from trajplan.cli import build_parser

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COMMON = {"-h", "--help", "-v", "--verbose", "-q", "--quiet", "--json"}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """The option strings of each optional argument (``("-o", "--output")``), common ones left out."""
    return [tuple(a.option_strings) for a in parser._actions if a.option_strings and not set(a.option_strings) & COMMON]


def test_every_option_of_every_command_is_in_its_row_of_cli_md():
    text = CLI_MD.read_text()
    missing = {}
    for name, parser in _subcommands().items():
        rows = [line for line in text.splitlines() if line.startswith(f"| `trajplan {name} ")]
        assert len(rows) == 1, f"docs/cli.md has {len(rows)} table rows for trajplan {name}"
        usage = rows[0].split("` |")[0]
        found = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage))
        lacking = sorted("/".join(strings) for strings in _options(parser) if not set(strings) & found)
        if lacking:
            missing[name] = lacking
    assert not missing, f"options missing from their command's row in docs/cli.md: {missing}"


def test_the_global_options_are_in_cli_md():
    text = CLI_MD.read_text()
    top = build_parser()
    for option in {o for a in top._actions for o in a.option_strings} - {"-h", "--help"}:
        assert f"`{option}" in text or f"/{option}" in text, option

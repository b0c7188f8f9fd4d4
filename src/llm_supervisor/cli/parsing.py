"""argparse for one-shot commands, without the parts that cost ``llm-supervisorctl status`` a
sixth of its time: argparse builds every subcommand's parser before parsing (23 parsers, each
asking gettext for its headings), and its help formatter imports :mod:`shutil` (with bz2, lzma
and zlib) only to read the terminal's width.

:class:`Subcommands` builds only the subcommand on the command line (all of them when there is
none or it is unknown, so ``--help`` and the "invalid choice" error still list every one), and
:func:`help_formatter` reads the width the way :func:`shutil.get_terminal_size` does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Sequence

TYPE_CHECKING = False  # typing is not imported at run time: llm-supervisorctl starts faster
if TYPE_CHECKING:
    from typing import Any


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, its width from ``COLUMNS`` or the terminal, else 80 columns."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return argparse.HelpFormatter(prog, width=max(columns, 20) - 2)


class LeanParser(argparse.ArgumentParser):
    """An ArgumentParser with :func:`help_formatter`; its subcommands' parsers are one too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", help_formatter)
        super().__init__(*args, **kwargs)


class _Unbuilt:
    """Stands in for a subcommand that is not being run: takes its arguments, builds nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


class Subcommands:
    """``parser.add_subparsers()`` that builds the parser of ``only`` (every one when None)."""

    def __init__(self, parser: argparse.ArgumentParser, only: str | None, **kwargs: Any):
        self._action = parser.add_subparsers(**kwargs)
        self._only = only
        self.built: list[str] = []

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self._only is not None and name != self._only:
            return _Unbuilt()
        self.built.append(name)
        return self._action.add_parser(name, **kwargs)


def subcommand_in(argv: Sequence[str], options_with_values: Collection[str]) -> str | None:
    """The first word of ``argv`` that is neither an option nor an option's value; None when
    help is asked for before it (the top-level help lists every subcommand)."""
    words = iter(argv)
    for word in words:
        if word in options_with_values:
            next(words, None)
        elif word in ("-h", "--help"):
            return None
        elif not word.startswith("-"):
            return word
    return None

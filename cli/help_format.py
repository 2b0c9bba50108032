"""How `--help` renders options: a plain flag (`--json`, `--quiet`, `--help`) shows no `<bool>`.

typer's rich help prints the parameter's type after every option, flags included, where it
reads as if the flag took a value (`--json <bool>`). Flags take none, so they get no type
column; options that take a value keep theirs (`--folds <int>`). Imported once by cli/app.py.
"""

from __future__ import annotations

from typer.core import TyperOption

_typed = TyperOption.display_type_rich


def _display_type_rich(self: TyperOption, ctx) -> str | None:
    if self.is_flag and self.metavar is None:  # --x, --x/--no-x: nothing follows the flag
        return None
    return _typed(self, ctx)


TyperOption.display_type_rich = _display_type_rich

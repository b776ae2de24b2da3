"""Find the line of a key in a TOML file, so policy errors can point at it.

tomllib gives values, not positions. Policies are small and hand-written, so a line scan that
tracks `[table]` / `[[array]]` headers is enough to name the line a user has to fix.
"""

from __future__ import annotations

import re

_ARRAY = re.compile(r"^\s*\[\[\s*([^\]\s]+)\s*\]\]")
_TABLE = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")
_KEY = re.compile(r"""^\s*["']?([A-Za-z0-9_\-]+)["']?\s*=""")


def locate(text: str, path: tuple[str | int, ...]) -> int | None:
    """Line number (1-based) of `path`, e.g. ("tiers", 1, "model"); falls back to its table."""
    *table_path, key = path if path and isinstance(path[-1], str) else (*path, None)
    wanted = tuple(table_path)
    counts: dict[tuple[str | int, ...], int] = {}
    context: tuple[str | int, ...] = ()
    table_line: int | None = 1 if not wanted else None
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _ARRAY.match(line):
            # [[tiers.deployments]] belongs to the latest [[tiers]]: its index counts per parent.
            parent: tuple[str | int, ...] = ()
            for part in m.group(1).split(".")[:-1]:
                # a plain [table] parent (e.g. [auth] of [[auth.keys]]) has no index
                seen = counts.get((*parent, part))
                parent = (*parent, part) if seen is None else (*parent, part, seen - 1)
            name = (*parent, m.group(1).split(".")[-1])
            index = counts.get(name, 0)
            counts[name] = index + 1
            context = (*name, index)
        elif m := _TABLE.match(line):
            context = tuple(m.group(1).split("."))
        elif (m := _KEY.match(line)) and context == wanted and m.group(1) == key:
            return number
        else:
            continue
        if context == wanted:
            table_line = number
    return table_line

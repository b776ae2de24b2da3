"""The shape of the code (docs/architecture.md) stays true: no import goes against the layers.

Every import in router/, classifiers/ and policies/ is read with `ast` (top-level ones, imports
inside functions, `if TYPE_CHECKING:` ones alike: each is a dependency a reader must follow) and
checked against the rules below, the same table as docs/architecture.md's "Rules". A failure
names the file, the line and the rule, e.g.

    router/accounting/ledger.py:12: router.accounting.ledger imports router.serving.guard:
    accounting/ may import only its own modules

Change a rule only with the page, and say why there.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("router", "classifiers", "policies")

# Each module of router/ belongs to one part: the subpackages, and three groups of top-level
# modules. Longest prefix wins.
PARTS = {
    "router": "api",  # router/__init__.py: the public names, imported lazily
    "router.__main__": "api",
    "router.sdk": "api",
    "router.cli": "api",
    "router.engine": "core",
    "router.decider": "core",
    "router.routing": "core",
    "router.relay": "core",
    "router.errors": "base",
    "router.messages": "base",
    "router.streaming": "base",
    "router.serving": "serving",
    "router.access": "access",
    "router.coalescing": "coalescing",
    "router.upstream": "upstream",
    "router.accounting": "accounting",
    "router.state": "state",
    "classifiers": "classifiers",
    "policies": "policies",
}

ROUTER_PARTS = ("api", "serving", "core", "access", "coalescing", "upstream", "accounting",
                "state", "base")

# part -> the other parts it may import (its own modules always). classifiers and policies are
# libraries under the router: any part of router may use them, they never use router.
MAY_IMPORT: dict[str, set[str]] = {
    "api": set(ROUTER_PARTS),
    "serving": {"core", "access", "coalescing", "upstream", "accounting", "state", "base"},
    "core": {"coalescing", "upstream", "accounting", "base"},
    "access": {"state", "base"},
    "coalescing": {"state", "base"},
    "upstream": {"accounting", "base"},
    "accounting": set(),
    "state": set(),
    "base": set(),
    "classifiers": set(),
    "policies": {"classifiers"},
}
for _part in ROUTER_PARTS:
    MAY_IMPORT[_part] |= {"classifiers", "policies"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    module: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.imported}: {self.rule}"


def part_of(module: str) -> str | None:
    best = None
    for prefix in PARTS:
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best)):
            best = prefix
    return PARTS[best] if best is not None else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[module_name(path)] = path
    return out


def imports(source: str, module: str, is_package: bool,
            known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) for every import of one of our packages in `source`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # `from router.upstream import fastjson` imports the module router.upstream.fastjson
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if sub in known else target))
    return [(line, name) for line, name in out if name.split(".")[0] in PACKAGES]


def check(source: str, module: str, path: str, *, is_package: bool = False,
          known: set[str] | None = None) -> list[Violation]:
    """The imports of one module that go against MAY_IMPORT."""
    known = set(our_modules()) if known is None else known
    mine = part_of(module)
    found = []
    for line, imported in imports(source, module, is_package, known):
        theirs = part_of(imported)
        if mine is None or theirs is None:
            found.append(Violation(path, line, module, imported,
                                   "belongs to no part: add it to PARTS and the architecture page"))
        elif theirs != mine and theirs not in MAY_IMPORT[mine]:
            allowed = ", ".join(sorted(MAY_IMPORT[mine])) or "only its own modules"
            found.append(Violation(path, line, module, imported,
                                   f"{mine} may import {allowed}"))
    return found


def all_violations() -> list[Violation]:
    modules = our_modules()
    known = set(modules)
    found = []
    for module, path in modules.items():
        found += check(path.read_text(encoding="utf-8"), module,
                       str(path.relative_to(ROOT)), is_package=path.name == "__init__.py",
                       known=known)
    return found


def test_imports_follow_the_layers():
    violations = all_violations()
    assert not violations, "imports against docs/architecture.md's rules:\n" + "\n".join(
        map(str, violations))


def test_every_router_module_belongs_to_a_part():
    for module in our_modules():
        assert part_of(module) is not None, module
    # and no part is named in the rules that no module has
    parts = {part_of(m) for m in our_modules()}
    assert parts == set(MAY_IMPORT), parts ^ set(MAY_IMPORT)


def test_the_check_names_the_offending_module_and_line():
    source = (
        '"""A ledger that reached up into the proxy."""\n'
        "from router.accounting.records import RequestRecord\n"
        "\n"
        "def key():\n"
        "    from router.serving.guard import current_key_id\n"
        "    return current_key_id()\n"
    )
    found = check(source, "router.accounting.bad", "router/accounting/bad.py")
    assert [str(v) for v in found] == [
        "router/accounting/bad.py:5: router.accounting.bad imports router.serving.guard: "
        "accounting may import classifiers, policies"]


def test_the_check_resolves_relative_and_submodule_imports():
    known = set(our_modules())
    # `from ..serving import guard` inside router/state/x.py is router.serving.guard
    found = check("from ..serving import guard\n", "router.state.x", "router/state/x.py",
                  known=known)
    assert [(v.line, v.imported) for v in found] == [(1, "router.serving.guard")]
    # classifiers never import router, not even its top-level names
    found = check("import router\n", "classifiers.x", "classifiers/x.py", known=known)
    assert [(v.line, v.imported, v.rule) for v in found] == [
        (1, "router", "classifiers may import only its own modules")]
    # a module of the same part, and the libraries below router, are fine
    assert check("from router.upstream.pool import Pool\nimport policies\n",
                 "router.upstream.x", "router/upstream/x.py", known=known) == []

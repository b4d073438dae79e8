"""The house's rules, read from the code's own imports (grimp builds the graph; nothing is run).

- No import loops anywhere in ``client`` or ``frontends``: module-level, function-level and
  ``TYPE_CHECKING`` imports all count, since each makes one module depend on the other.
- The SDK (``client`` outside ``client.local``) never imports the laptop tooling or the frontends.
- ``frontends.core`` imports neither Streamlit, Gradio nor a framework package; the two framework
  packages do not import each other.
- The frontends use the SDK's public or package-level API: no ``client._private`` module or name.
- Only ``client._mlflow`` switches MLflow's process-global URIs.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import grimp
import pytest
from conftest import ROOT

SDK_TOOLING = "client.local"


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("client", "frontends", include_external_packages=True, cache_dir=None)


def _ours(module: str) -> bool:
    return module.split(".")[0] in ("client", "frontends")


def _cycles(g: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    modules = sorted(m for m in g.modules if _ours(m))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(m for m in g.find_modules_directly_imported_by(root) if _ours(m))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(m for m in g.find_modules_directly_imported_by(child)
                                                    if _ours(m)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _chain(importer: str, imported: str) -> str:
    chain = graph().find_shortest_chain(importer=importer, imported=imported)
    return " -> ".join(chain or [])


def test_the_cycle_finder_finds_a_loop() -> None:
    """The checker itself: a graph with a known loop reports it (so an empty answer means something)."""
    g = grimp.ImportGraph()
    for name in ("client.a", "client.b", "client.c"):
        g.add_module(name)
    g.add_import(importer="client.a", imported="client.b")
    g.add_import(importer="client.b", imported="client.c")
    g.add_import(importer="client.c", imported="client.a")
    assert _cycles(g) == [["client.a", "client.b", "client.c"]]


def test_no_import_loops() -> None:
    assert _cycles(graph()) == []


def _sdk_modules() -> list[str]:
    return sorted(m for m in graph().modules
                  if m.split(".")[0] == "client" and not (m == SDK_TOOLING or m.startswith(SDK_TOOLING + ".")))


@pytest.mark.parametrize("forbidden", [SDK_TOOLING, "frontends"])
def test_the_sdk_never_imports_the_tooling_or_the_frontends(forbidden: str) -> None:
    def inside(module: str) -> bool:
        return module == forbidden or module.startswith(forbidden + ".")

    offenders = sorted(f"{m}: {_chain(m, hit)}" for m in _sdk_modules()
                       for hit in graph().find_upstream_modules(m) if inside(hit))
    assert offenders == []


@pytest.mark.parametrize("forbidden", ["streamlit", "gradio", "frontends.streamlit_ui", "frontends.gradio_ui"])
def test_the_frontends_core_imports_no_framework(forbidden: str) -> None:
    assert not graph().chain_exists(importer="frontends.core", imported=forbidden, as_packages=True), \
        _chain("frontends.core", forbidden)


@pytest.mark.parametrize(("one", "other"), [("frontends.streamlit_ui", "frontends.gradio_ui"),
                                            ("frontends.gradio_ui", "frontends.streamlit_ui")])
def test_the_framework_packages_are_independent(one: str, other: str) -> None:
    assert not graph().chain_exists(importer=one, imported=other, as_packages=True)


# --- read from the source with ast: which *names* are imported, and who calls what


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` for each import in ``path``, relative ones made absolute."""
    # the package a relative import starts from (a package's __init__ is in the package itself)
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((module, tuple(a.name for a in node.names)))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _offending(paths: list[Path], bad) -> list[str]:
    return [f"{p.relative_to(ROOT)}: {m} {names}" for p in paths for m, names in _imports(p) if bad(m, names)]


def test_the_apps_import_only_the_sdks_public_modules():
    def private(module: str, names: tuple[str, ...]) -> bool:
        parts = module.split(".")
        return parts[0] == "client" and (any(p.startswith("_") for p in parts)
                                         or any(n.startswith("_") for n in names))

    assert _offending(_modules("frontends"), private) == []


def test_mlflows_state_has_one_owner():
    """Nobody but ``client._mlflow`` switches MLflow's URIs, and no private name of the owner or
    of the signatures module is imported elsewhere."""
    code = _modules("client") + _modules("frontends")
    owner = ROOT / "client" / "_mlflow"
    outside = [p for p in code if owner not in p.parents]
    switches = [f"{p.relative_to(ROOT)}" for p in outside
                if "set_tracking_uri(" in p.read_text() or "set_registry_uri(" in p.read_text()]
    assert switches == []
    leaked = _offending(code, lambda m, names: m in ("client._mlflow", "client._schema.signatures")
                        and any(n.startswith("_") for n in names))
    assert leaked == []

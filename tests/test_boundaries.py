"""Who may import whom, read from the source: the SDK never imports the laptop tooling or the
apps, the apps use the SDK's public modules only, the framework-neutral core imports no
framework, and the Gradio pages form no loop."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT


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


def test_the_sdk_never_imports_the_laptop_tooling_or_the_apps():
    sdk = [p for p in _modules("client") if "local" not in p.relative_to(ROOT / "client").parts]
    assert _offending(sdk, lambda m, _n: m.startswith(("client.local", "frontends"))) == []


def test_the_apps_import_only_the_sdks_public_modules():
    def private(module: str, names: tuple[str, ...]) -> bool:
        parts = module.split(".")
        return parts[0] == "client" and (any(p.startswith("_") for p in parts)
                                         or any(n.startswith("_") for n in names))

    assert _offending(_modules("frontends"), private) == []


def test_the_core_imports_no_framework():
    framework = ("streamlit", "gradio", "frontends.streamlit_ui", "frontends.gradio_ui")
    assert _offending(_modules("frontends/core"), lambda m, _n: m.startswith(framework)) == []


def test_no_page_imports_the_gradio_app_it_is_part_of():
    pages = [p for p in _modules("frontends/gradio_ui") if p.name != "app.py"]
    assert _offending(pages, lambda m, _n: m == "frontends.gradio_ui.app") == []


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

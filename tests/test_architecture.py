"""The shape of the package: module sizes, an import graph without cycles, in pipeline order."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "featx"
# Each stage may import only from stages listed before it (and from itself).
PIPELINE = ["featx._version", "featx.extraction", "featx.errors", "featx.constraints", "featx.atomic",
            "featx.progress", "featx.caches", "featx.extraction.background", "featx.config", "featx.options",
            "featx.hardware", "featx.data", "featx.store", "featx.backbones", "featx.extraction.batching",
            "featx.pooling", "featx.heads.blocks_model", "featx.featurizers", "featx.extraction.runners",
            "featx.extraction.shards", "featx.extraction.windows", "featx.metrics", "featx.epochs",
            "featx.finetune.recipe", "featx.finetune.classifier", "featx.finetune.images", "featx.finetune.texts",
            "featx.modalities", "featx.extraction.engine", "featx.verify", "featx.relabel", "featx.encoding",
            "featx.extraction.launch", "featx.extraction.ray_engine", "featx.heads", "featx.mteb", "featx.finetune",
            "featx.predictor", "featx.results", "featx.embedder", "featx.train", "featx.bench", "featx.demo", "featx.cli",
            "featx.__main__", "featx"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every featx module `path` imports, at the top or inside a function (a lazy import is still a
    dependency). ``from featx.pkg import mod`` imports the submodule featx.pkg.mod (and the package,
    for any other name): a package re-exporting its submodules, which import it back, is a cycle."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("featx") and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} if node.module != "featx" else set()
            modules = {name for name in submodules if _is_module(name)}
            found.update(modules)
            if len(modules) < len(node.names):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("featx"))
    return found


def _stage(module: str) -> int:
    """The stage of the longest PIPELINE entry that is `module` or a package holding it."""
    found = max((p for p in PIPELINE if module == p or module.startswith(p + ".")), key=len)
    return PIPELINE.index(found)


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) - {_module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_no_module_over_350_lines_and_the_cli_under_300():
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        limit = 299 if "cli" in path.parts else 350
        assert lines <= limit, f"{path.relative_to(PACKAGE.parent)} has {lines} lines (at most {limit})"


def test_every_module_has_its_own_stage_or_a_package_stage():
    # Only the package itself falls back to the last stage; a module missing from PIPELINE would
    # land there too and could then import anything, so each must be listed (or its package).
    unlisted = [m for m in _graph() if m != "featx" and _stage(m) == len(PIPELINE) - 1]
    assert unlisted == [], unlisted


def test_imports_follow_the_pipeline_and_have_no_cycle():
    graph = _graph()
    backwards = [(m, d) for m, deps in graph.items() for d in deps
                 if m != "featx" and _stage(d) > _stage(m)]
    assert backwards == [], backwards
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import cycle: " + " -> ".join([*trail, module])
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module != "featx":  # the package's lazy re-exports (PEP 562) point at every stage
            visit(module, [])


def test_h5py_is_imported_only_by_the_store_package():
    """The HDF5 format lives behind featx.store (reader, writer, merge, vector cache, export)."""
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "h5py" or name.startswith("h5py.") for name in names):
                importers.append(_module_name(path))
    assert importers and all(m.startswith("featx.store") for m in importers), sorted(set(importers))


def _third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        found.update(name.split(".")[0] for name in names if not name.startswith("featx"))
    return found


def test_the_engine_imports_no_modality_specific_module():
    """What the engine's docstring claims, held: it knows nothing of text or images (it asks the
    modality registry, featx.modalities, for sources and featurizers), nor of devices (the
    runner's: no torch), nor of HDF5 directly (featx.store's)."""
    specific = ("featx.modalities.", "featx.featurizers.text", "featx.featurizers.image", "featx.backbones",
                "featx.data.images")
    assert "featx.modalities" in _imports(PACKAGE / "extraction" / "engine.py")
    assert sorted(m for m in _imports(PACKAGE / "extraction" / "engine.py") if m.startswith(specific)) == []
    docstring = ast.get_docstring(ast.parse((PACKAGE / "extraction" / "engine.py").read_text())) or ""
    assert "knows nothing of text\nor images, or of devices" in docstring
    assert _third_party_imports(PACKAGE / "extraction" / "engine.py") <= {
        "__future__", "itertools", "time", "collections", "dataclasses", "pathlib", "typing", "numpy"}


# Where a modality's own code lives; everything else reaches a modality through featx.modalities.
MODALITY_SPECIFIC = ("featx.modalities.", "featx.featurizers.text", "featx.featurizers.image", "featx.backbones",
                     "featx.data.images", "featx.finetune.texts", "featx.finetune.images")
# What a new modality must not have to edit: the engine, store, runners, shards, predictor, fine-tune
# entry, training, bench and CLI (tests/test_toy_modality.py registers a third from outside). Head
# kinds are parts of their own (HEAD_KINDS): a blocks head trains a text model's top blocks.
MODALITY_FREE = ("featx.extraction", "featx.store", "featx.predictor", "featx.finetune", "featx.train", "featx.bench",
                 "featx.cli")


def _modality_literals(path: Path) -> list[str]:
    """`x.modality == "image"`-like comparisons: a modality's name compared in code that must not know it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names_modality = any(isinstance(s, ast.Attribute) and s.attr == "modality" for s in sides)
            if names_modality and any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_the_modality_free_modules_never_name_a_modality():
    graph = _graph()
    for module, deps in sorted(graph.items()):
        if module == "featx.extraction.engine" or not module.startswith(MODALITY_FREE) or module.startswith(MODALITY_SPECIFIC):
            continue
        assert sorted(d for d in deps if d.startswith(MODALITY_SPECIFIC)) == [], module
    for path in PACKAGE.rglob("*.py"):
        if _module_name(path).startswith(MODALITY_FREE):
            assert _modality_literals(path) == [], path


def test_no_public_name_is_also_a_submodule():
    """Importing featx.X sets the package's attribute X to the module, shadowing a lazy name X."""
    import featx

    submodules = {path.stem if path.name != "__init__.py" else path.parent.name for path in PACKAGE.glob("*")
                  if path.suffix == ".py" or (path / "__init__.py").exists()}
    assert sorted(set(featx.__all__) & submodules) == []


def _functions() -> list[tuple[Path, ast.FunctionDef | ast.AsyncFunctionDef]]:
    return [(path, node) for path in sorted(PACKAGE.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_over_60_lines():
    """Counted from the first statement after the docstring to the end."""
    long = []
    for path, node in _functions():
        body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
        lines = node.end_lineno - body[0].lineno + 1  # type: ignore[operator]
        if lines > 60:
            long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == [], long


def _is_click_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and ast.unparse(d.func).endswith(("cli.command", "click.command", "group"))
               for d in node.decorator_list)


def test_no_public_function_takes_over_10_parameters():
    """Named parameters, self and cls aside (a **keywords catch-all forwards to another's); private
    functions and dunders (an estimator's scikit-learn __init__) aside, and the click commands,
    whose parameters are their flags."""
    many = []
    for path, node in _functions():
        if node.name.startswith("_") or _is_click_command(node):
            continue
        args = node.args
        named = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.arg not in ("self", "cls")]
        if len(named) > 10:
            many.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({len(named)})")
    assert many == [], many


def test_the_engine_writes_through_the_store_seam_only():
    """What the engine's docstring claims: no store format of its own; it asks the StoreFormat."""
    docstring = ast.get_docstring(ast.parse((PACKAGE / "extraction" / "engine.py").read_text())) or ""
    assert "nor of a store format" in docstring
    store_modules = sorted(m for m in _imports(PACKAGE / "extraction" / "engine.py") if m.startswith("featx.store."))
    assert store_modules == ["featx.store.vector_cache"], store_modules


def test_the_cli_and_the_extraction_path_import_no_scikit_learn():
    """scikit-learn (with scipy and pandas) took 1.1 s of every `featx` process's start: the CLI and the
    extraction path imported it through the fine-tuned predictors' base class. They now import it only
    where a head or a fine-tuned model is made."""
    import subprocess
    import sys

    probe = ("import sys, featx.cli, featx.extraction.engine, featx.modalities; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas')))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout[:300]

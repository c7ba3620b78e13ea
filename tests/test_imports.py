"""The package's import graph has no cycle: every module can be read bottom-up.

Each ``import`` and ``from ... import`` statement of every module under ``skfwp/``
counts, including those inside functions (a lazy import is still a dependency).
"""

import ast
import pathlib

import skfwp

ROOT = pathlib.Path(skfwp.__file__).parent


def _modules():
    found = {}
    for file in ROOT.rglob("*.py"):
        parts = ("skfwp", *file.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = file
    return found


def _imported(name, file, modules):
    """The skfwp modules that module ``name`` (at ``file``) imports."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # "from . import x" may import the module x
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in modules else source)
    return {t for t in targets if t in modules and t != name}


def _import_graph():
    modules = _modules()
    return {name: _imported(name, file, modules) for name, file in modules.items()}


def _find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_the_imports_it_should(tmp_path):
    graph = _import_graph()
    assert "skfwp.base" in graph["skfwp.delta"]  # from .base import ...
    assert "skfwp.nn.fast_solver" in graph["skfwp.nn.delta"]  # from .fast_solver, in nn/
    assert "skfwp.nn.path" in graph["skfwp.path"]  # from .nn.path import ...
    file = tmp_path / "probe.py"
    file.write_text("from ..path import InputPath\nfrom . import solver\n")
    found = _imported("skfwp.nn.probe", file, _modules())
    assert found == {"skfwp.path", "skfwp.nn.solver"}
    assert "skfwp.persistence" in graph["skfwp.base"]  # a lazy import inside a method
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_skfwp():
    cycle = _find_cycle(_import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_leaves_import_nothing_of_skfwp():
    graph = _import_graph()
    for leaf in ("skfwp._version", "skfwp.registry", "skfwp._validation"):
        assert graph[leaf] == set(), leaf


def test_the_torch_layer_imports_only_itself():
    """``skfwp.nn`` (torch in, torch out) never reaches up into the scikit-learn layer,
    and none of its modules imports scikit-learn or numpy-level skfwp code."""
    graph = _import_graph()
    torch_layer = {name for name in graph if name == "skfwp.nn" or name.startswith("skfwp.nn.")}
    assert {"skfwp.nn.solver", "skfwp.nn.fast_solver", "skfwp.nn.path"} <= torch_layer
    for name in torch_layer:
        assert graph[name] <= torch_layer, (name, graph[name] - torch_layer)
        tree = ast.parse(_modules()[name].read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m.split(".")[0] == "sklearn" for m in imported), name

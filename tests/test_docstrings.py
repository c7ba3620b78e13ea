"""Every public class and function documents exactly the parameters of its signature.

The Parameters section of a numpydoc docstring lists ``name : type`` lines (several
names may share one line, ``a, b : float``); the test compares those names with
``inspect.signature`` so a renamed, added or dropped parameter cannot go unnoticed.
"""

import importlib
import inspect
import pkgutil
import re

import pytest

import skfwp

_SECTION = re.compile(
    r"^(\s*)Parameters\n\1-{10,}\n(.*?)(?:\n\1[A-Z][a-z ]+\n\1-{3,}\n|\Z)", re.S | re.M
)


def documented_parameters(doc):
    """Names in the Parameters section of a numpydoc docstring (None: no section)."""
    match = _SECTION.search(doc or "")
    if match is None:
        return None
    indent, body = match.group(1), match.group(2)
    names = []
    for line in body.splitlines():
        if line.startswith(indent) and not line.startswith(indent + " ") and line.strip():
            head = line.strip().split(" : ")[0]
            names += [n.strip().lstrip("*") for n in head.split(",")]
    return names


def _public_objects():
    modules = [skfwp] + [
        importlib.import_module(f"skfwp.{m.name}")
        for m in pkgutil.walk_packages(skfwp.__path__)
        if not m.name.split(".")[-1].startswith("_")
    ]
    seen = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith(
                "skfwp"
            ):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(seen.items())


def _signature_parameters(obj):
    if not inspect.isclass(obj):
        return list(inspect.signature(obj).parameters)
    if obj.__init__ is object.__init__:
        return []
    return [name for name in inspect.signature(obj.__init__).parameters if name != "self"]


OBJECTS = _public_objects()


def test_the_parser_reads_numpydoc():
    doc = """Do it.

    Parameters
    ----------
    a, b : float
        Two numbers.
    **params
        The rest.

    Returns
    -------
    c : float
    """
    assert documented_parameters(doc) == ["a", "b", "params"]
    assert len(OBJECTS) > 30  # the walk found the package


@pytest.mark.parametrize(("name", "obj"), OBJECTS, ids=[n for n, _ in OBJECTS])
def test_docstring_documents_exactly_the_signature(name, obj):
    expected = _signature_parameters(obj)
    documented = documented_parameters(obj.__doc__)
    if documented is None:
        assert not expected, f"{name} takes {expected} but its docstring has no Parameters"
        return
    assert len(set(documented)) == len(documented), f"{name} documents a name twice"
    assert sorted(documented) == sorted(expected), (
        f"{name}: documented {sorted(set(documented) - set(expected))} not in the signature, "
        f"{sorted(set(expected) - set(documented))} of the signature undocumented"
    )


_DEFAULT = re.compile(r"^    (\w+) : .*?, default=(.+)$", re.M)


ESTIMATORS = sorted(skfwp.registry.all_estimators().items())


@pytest.mark.parametrize(("name", "cls"), ESTIMATORS, ids=[n for n, _ in ESTIMATORS])
def test_estimator_docstring_states_its_own_defaults(name, cls):
    """A default written in the docstring is the one ``__init__`` has: a model that
    overrides a shared default (the time-warp recipe's ``max_iter=300``) says so."""
    signature = inspect.signature(cls.__init__).parameters
    checked = 0
    for param, written in _DEFAULT.findall(cls.__doc__):
        if param not in signature or "," in written:  # "rtol, atol : ..." pairs
            continue
        default, written = signature[param].default, written.strip()
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            written = float(written)  # 1e-4 and 0.0001 are one number
        assert written in (default, repr(default), str(default), f'"{default}"'), (
            f"{name}: docstring says {param} default={written}, __init__ has {default!r}"
        )
        checked += 1
    assert checked >= 20

"""The package's public surface matches its stubs (``kip/__init__.pyi``):
names, parameters and defaults, as ``help()``/``inspect`` show them."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

import kip

STUB = Path(kip.__file__).with_suffix(".pyi")
if not STUB.is_file():  # editable install: the stub lives next to __init__.py in the source tree
    STUB = Path(__file__).resolve().parents[1] / "python" / "kip" / "__init__.pyi"


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def stub_functions():
    """(qualified name, ast.FunctionDef) for every stub function and method."""
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not any(
                    isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                ):
                    yield f"{node.name}.{item.name}", item


def stub_params(fn: ast.FunctionDef) -> dict:
    """name -> default (``inspect.Parameter.empty`` when none) of a stub function."""
    a = fn.args
    out = {}
    positional = a.posonlyargs + a.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(a.defaults)) + [
        ast.literal_eval(d) for d in a.defaults
    ]
    for arg, default in zip(positional, defaults):
        out[arg.arg] = default
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        out[arg.arg] = inspect.Parameter.empty if default is None else ast.literal_eval(default)
    out.pop("self", None)
    return out


def runtime(qualname: str):
    obj = kip
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_stub_name_exists():
    names = {n.name for n in stub_tree().body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    missing = sorted(n for n in names if not hasattr(kip, n))
    assert not missing
    assert set(kip.__all__) >= names - {"Points", "Labels"}
    assert isinstance(kip.__version__, str) and kip.__version__


STUB_FUNCS = [(q, f) for q, f in stub_functions() if not q.endswith("__init__") and not q.startswith("KernelRidge.")]


@pytest.mark.parametrize("qualname, fn", STUB_FUNCS, ids=[q for q, _ in STUB_FUNCS])
def test_runtime_signature_matches_the_stub(qualname, fn):
    """Each runtime signature has the stub's parameters and defaults, so
    ``help()`` shows real values (e.g. ``reg=1e-06``) and never ``...``."""
    sig = inspect.signature(runtime(qualname))
    got = {n: p.default for n, p in sig.parameters.items() if n != "self"}
    want = stub_params(fn)
    assert list(got) == list(want), f"{qualname}: parameters {list(got)} vs stub {list(want)}"
    wrong = {n: (got[n], want[n]) for n in want if got[n] != want[n]}
    assert not wrong, f"{qualname}: runtime vs stub defaults {wrong}"


def test_documented_defaults_are_the_effective_ones(tmp_path):
    rng = np.random.default_rng(51)
    x, ids = rng.standard_normal((6, 4)), np.arange(6) % 2
    assert kip.krr_fit("fc1-ntk", x, ids).ridge == kip.krr_fit("fc1-ntk", x, ids, reg=1e-6).ridge
    kip.distill(support=10, steps=1, out=tmp_path / "r")
    with open(tmp_path / "r" / "config.json") as f:
        cfg = json.load(f)
    assert cfg["kip"]["reg"] == 1e-6 and cfg["kip"]["adam"]["lr"] == 0.01
    assert cfg["kip"]["kernels"] == ["fc1-ntk"] and cfg["preprocess"] == "standard"
    assert cfg["eval_every"] == 100 and cfg["checkpoint_every"] == 100 and cfg["eval_block"] == 2000


def test_docstrings_exist():
    for obj in (kip.Kernel, kip.KrrModel, kip.Run, kip.distill, kip.krr_fit, kip.label_solve,
                kip.load_run, kip.load_dataset, kip.KernelRidge, kip.Kernel.gram, kip.Kernel.vjp):
        assert obj.__doc__ and obj.__doc__.strip(), obj

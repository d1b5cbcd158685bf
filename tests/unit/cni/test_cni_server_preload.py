"""The CNI server serves each call chrooted to its caller's root, where the ``calico`` package
may not exist (a containerised calico-node): every module a call can import lazily must be loaded
by :func:`calico.cni.server.preload` first. A lazy import the preload misses fails only there, in a
real cluster ("No module named 'calico.datastore.etcd'" once stopped every pod), so this test
reads the function-level ``calico`` imports of every ``calico`` module loaded after the preload
and requires each to be loaded already (a fresh interpreter, so nothing else loaded them)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import ast, importlib.util, json, sys
    from calico.cni import server

    server.preload()

    def is_module(name):
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            return False

    def lazy_imports(path):
        tree = ast.parse(open(path).read())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        yield from (a.name for a in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        yield node.module
                        for a in node.names:
                            if is_module(f"{node.module}.{a.name}"):
                                yield f"{node.module}.{a.name}"

    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "calico")
    missing = sorted(
        f"{name}: {imp}"
        for name in loaded
        if (getattr(sys.modules[name], "__file__", None) or "").endswith(".py")
        for imp in lazy_imports(sys.modules[name].__file__)
        if imp.split(".")[0] == "calico" and imp not in sys.modules
    )
    print(json.dumps({"loaded": len(loaded), "missing": missing}))
    """
)


def test_preload_loads_every_lazy_import_a_call_can_reach() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout)
    assert got["loaded"] > 20
    assert got["missing"] == []

"""The backend protocol (thinc-style): no backend adds public methods the base lacks, overrides keep the base's
signatures; third-party backends arrive through the entry-point group, and a broken one is isolated."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

from deepntk.backends.base import Backend
from deepntk.backends.registry import BUILTIN_BACKENDS, ENTRY_POINT_GROUP, backend_class


def parameters(function) -> list:
    """Names, kinds and defaults of a function's parameters (annotations may differ)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def public_methods(cls) -> dict:
    return {name: member for name, member in inspect.getmembers(cls, callable) if not name.startswith("_")}


@pytest.mark.parametrize("name", list(BUILTIN_BACKENDS))
def test_backends_add_no_public_methods_and_keep_signatures(name):
    cls = backend_class(name)  # importing the module needs none of its library
    base = public_methods(Backend)
    extra = set(public_methods(cls)) - set(base)
    assert not extra, f"{name} adds public methods the protocol lacks: {sorted(extra)}"
    for method, member in public_methods(cls).items():
        assert parameters(member) == parameters(base[method]), f"{name}.{method} changes its signature"


PLUGINS = {
    "loopback": """
        from deepntk.backends.base import Backend

        class LoopbackBackend(Backend):
            name = "loopback"
    """,
    "failing_check": """
        from deepntk.backends.base import Backend

        class FailingCheckBackend(Backend):
            name = "failing_check"

            @classmethod
            def availability(cls):
                raise RuntimeError("driver exploded")
    """,
}
ENTRY_POINTS = {"loopback": "loopback:LoopbackBackend", "failing-check": "failing_check:FailingCheckBackend",
                "missing": "no_such_module_anywhere:Backend", "not-a-backend": "json:loads"}


@pytest.fixture
def plugin_path(tmp_path):
    """A folder on PYTHONPATH holding plugin modules and a distribution whose entry points register them."""
    for module, source in PLUGINS.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    dist = tmp_path / "deepntk_test_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deepntk-test-plugins\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{name} = {target}" for name, target in ENTRY_POINTS.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def run_python(code: str, path: str):
    env = {**os.environ, "PYTHONPATH": path + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)


def test_a_plugin_registered_by_entry_point_computes_like_the_reference(plugin_path):
    result = run_python("""
        import json, numpy as np, deepntk
        p = deepntk.init_params(deepntk.MLP(2, 1, 6, 3.0), seed=1)
        X = np.random.default_rng(0).uniform(0.1, 1, size=(4, 2))
        diff = np.max(np.abs(deepntk.scaled_ntk(p, X, backend="loopback") - deepntk.scaled_ntk(p, X, backend="numpy")))
        print(json.dumps({"diff": float(diff), "name": deepntk.get_backend("loopback").name}))
    """, plugin_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"diff": 0.0, "name": "loopback"}


def test_broken_plugins_are_listed_as_unavailable_with_their_reason(plugin_path):
    result = run_python("""
        import json
        from deepntk.backends.registry import available_backends
        print(json.dumps({row["name"]: [row["available"], row.get("reason", "")] for row in available_backends()}))
    """, plugin_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert rows["numpy"][0] and rows["loopback"][0]
    assert not rows["missing"][0] and "cannot be loaded" in rows["missing"][1] and "ModuleNotFoundError" in rows["missing"][1]
    assert not rows["failing-check"][0] and "driver exploded" in rows["failing-check"][1]
    assert not rows["not-a-backend"][0] and "not a deepntk.backends.base.Backend subclass" in rows["not-a-backend"][1]


@pytest.mark.parametrize("name,message", [("missing", "cannot be loaded"), ("failing-check", "driver exploded"),
                                          ("not-a-backend", "not a deepntk")])
def test_choosing_a_broken_plugin_is_a_one_line_error(plugin_path, tmp_path, name, message):
    result = run_python(f"""
        import sys
        from deepntk.cli.main import main
        sys.exit(main(["ntk", "p.npz", "--x1", "x.npy", "--backend", "{name}", "-o", "K.npy"]))
    """, plugin_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    listing = run_python("from deepntk.cli.main import main; main(['backends'])", plugin_path)
    assert listing.returncode == 0 and "numpy" in listing.stdout and "Traceback" not in listing.stderr

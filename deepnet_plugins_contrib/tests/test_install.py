"""Integration: real installs into fresh virtual environments, offline.

deepnet and contrib are built as wheels from a copy of this repository (the build writes no
``build/`` or ``*.egg-info`` into the work tree) with this environment's pip and setuptools, then
installed with ``pip --python VENV/bin/python --no-index --no-deps`` into a venv made
``--without-pip``. The venv imports numpy, pluggy, attrs and click from this environment through
a ``.pth`` file naming a directory of symlinks to just those distributions: pointing it at the
whole site-packages would also expose this environment's own deepnet and contrib metadata, and
with it their entry points.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEPENDENCIES = ("numpy", "pluggy", "attrs", "click")
CONTRIB = "deepnet-plugins-contrib"
CONTRIB_PLUGINS = {
    f"contrib.{m}"
    for m in ("activations", "regularizers", "optimizers", "schedules", "callbacks", "layers")
}
TIMEOUT = 120


def clean_env() -> dict[str, str]:
    """This process's environment minus what would leak it into the fresh venv, offline pip."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("DEEPNET_")
    }
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def run(
    *args: str | Path, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
        cwd=cwd,
        check=False,
    )
    assert proc.returncode == 0 or not check, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def pip(*args: str | Path) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "pip", *args)


def build_wheels(sources: list[Path], out: Path) -> list[Path]:
    """Wheels of ``sources`` (project directories) in ``out``, built offline here."""
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out, *sources)
    return sorted(out.glob("*.whl"))


class Venv:
    """A fresh ``--without-pip`` virtual environment that sees only deepnet's dependencies."""

    def __init__(self, root: Path):
        self.root = root
        run(sys.executable, "-m", "venv", "--without-pip", root)
        self.python = root / "bin" / "python"
        purelib = run(self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
        deps = root / "deps"
        deps.mkdir()
        for name in DEPENDENCIES:
            dist = importlib.metadata.distribution(name)
            tops = {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}
            for top in tops - {"__pycache__"}:
                (deps / top).symlink_to(Path(dist.locate_file(top)))
        (Path(purelib.stdout.strip()) / "deepnet_deps.pth").write_text(f"{deps}\n")

    def install(self, *wheels: Path) -> None:
        pip("--python", self.python, "install", "--no-deps", "--no-index", "-q", *wheels)

    def uninstall(self, *names: str) -> None:
        pip("--python", self.python, "uninstall", "-y", "-q", *names)

    def deepnet(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.root / "bin" / "deepnet", *args, cwd=self.root, check=check)

    def json(self, *args: str) -> list[dict]:
        return json.loads(self.deepnet(*args, "--json").stdout)

    def script(self, source: str) -> dict:
        """Run ``source`` in the venv; it prints one JSON object."""
        return json.loads(run(self.python, "-c", textwrap.dedent(source), cwd=self.root).stdout)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Wheels of deepnet and contrib, built from a copy of the repository."""
    src = tmp_path_factory.mktemp("src")
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "tests", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "deepnet", src / "deepnet", ignore=junk)
    shutil.copytree(REPO / "deepnet_plugins_contrib", src / "contrib", ignore=junk)
    built = build_wheels([src, src / "contrib"], tmp_path_factory.mktemp("wheels"))
    by_name = {w.name.split("-")[0]: w for w in built}
    assert set(by_name) == {"deepnet", "deepnet_plugins_contrib"}, built
    return by_name


def test_contrib_installs_lists_and_uninstalls_cleanly(wheels, tmp_path):
    venv = Venv(tmp_path / "venv")
    venv.install(wheels["deepnet"], wheels["deepnet_plugins_contrib"])
    where = venv.script(
        """
        import json, deepnet, deepnet_plugins_contrib
        print(json.dumps([deepnet.__file__, deepnet_plugins_contrib.__file__]))
        """
    )
    assert all(path.startswith(str(venv.root)) for path in where), where

    records = venv.json("list")
    contrib = {(r["kind"], r["name"]): r for r in records if r["distribution"] == CONTRIB}
    mine = {("optimizer", "adam"), ("activation", "gelu"), ("regularizer", "l2")}
    mine |= {("schedule", "step"), ("callback", "early_stopping"), ("layer", "dropout")}
    mine |= {("recipe", name) for name in ("regularized", "postal", "postal_deep", "postal_wide")}
    assert mine <= set(contrib)
    # The built-in recipes come through deepnet's own entry point in a real install.
    default = next(r for r in records if (r["kind"], r["name"]) == ("recipe", "default"))
    assert (default["plugin"], default["distribution"]) == ("deepnet.recipes", "deepnet")
    assert {r["version"] for r in contrib.values()} == {"0.1.0"}
    assert not any(r["ambiguous"] for r in records)
    plugins = {p["name"]: p for p in venv.json("plugins")}
    assert {n for n, p in plugins.items() if p["distribution"] == CONTRIB} == CONTRIB_PLUGINS
    assert {p["status"] for p in plugins.values()} == {"loaded"}

    saved = venv.script(
        """
        import json
        from deepnet import Dense, Model
        model = Model([Dense(4, "leaky_relu"), Dense(3, "softmax")]).build((2,), seed=0)
        print(json.dumps(str(model.save("leaky.npz"))))
        """
    )

    venv.uninstall(CONTRIB)
    records = venv.json("list")
    assert not [r for r in records if r["distribution"] == CONTRIB]
    assert {"sgd", "relu", "dense", "default"} <= {r["name"] for r in records}
    assert not [p for p in venv.json("plugins") if p["distribution"] == CONTRIB]
    # A model that needs contrib now says which component is missing and what to install.
    failed = venv.deepnet("predict", saved, "nothing.npy", check=False)
    assert failed.returncode == 2
    assert "activation 'leaky_relu' from the distribution deepnet-plugins-contrib 0.1.0" in (
        failed.stderr
    )
    assert "pip install deepnet-plugins-contrib" in failed.stderr


BROKEN = {
    "deepnet-broken-import": """
        raise RuntimeError("broken on purpose")
        """,
    "deepnet-duplicate-relu": '''
        from deepnet import hookimpl
        from deepnet.plugins.activations import ReLU


        class OtherReLU(ReLU):
            """relu again, from another distribution."""


        @hookimpl
        def deepnet_register_activations(register):
            register(OtherReLU, name="relu")
        ''',
    "deepnet-widgets": '''
        from deepnet import hookimpl


        @hookimpl
        def deepnet_register_widgets(register):
            """A hook deepnet has no spec for."""
        ''',
}


def make_distribution(root: Path, dist: str, source: str) -> Path:
    """A one-module distribution ``dist`` whose entry point in group deepnet is its module."""
    module = dist.replace("-", "_")
    project = root / dist
    project.mkdir()
    (project / f"{module}.py").write_text(textwrap.dedent(source).lstrip())
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.0.1"

            [project.entry-points.deepnet]
            {module} = "{module}"

            [tool.setuptools]
            py-modules = ["{module}"]
            """
        )
    )
    return project


def test_broken_plugins_are_reported_and_the_rest_keeps_working(wheels, tmp_path):
    sources = [make_distribution(tmp_path, dist, src) for dist, src in BROKEN.items()]
    venv = Venv(tmp_path / "venv")
    venv.install(wheels["deepnet"], *build_wheels(sources, tmp_path / "wheels"))

    proc = venv.deepnet("plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    broken = plugins["deepnet_broken_import"]
    assert broken["status"] == "failed"
    assert broken["error"].startswith("import failed: RuntimeError: broken on purpose")
    widgets = plugins["deepnet_widgets"]
    assert widgets["status"] == "failed"
    assert (
        widgets["error"].startswith("validate failed")
        and "deepnet_register_widgets" in widgets["error"]
    )
    assert plugins["deepnet_duplicate_relu"]["status"] == "loaded"
    assert all(p["status"] == "loaded" for n, p in plugins.items() if n.startswith("deepnet."))
    assert "deepnet_broken_import" in proc.stderr and "deepnet_widgets" in proc.stderr

    relus = [r for r in venv.json("list", "activation") if r["name"] == "relu"]
    assert sorted(r["qualified_name"] for r in relus) == [
        "deepnet-duplicate-relu/relu",
        "deepnet/relu",
    ]
    assert all(r["ambiguous"] for r in relus)

    result = venv.script(
        """
        import json, warnings
        import numpy as np
        from deepnet import Dense, Model, AmbiguousComponentError, get_registry

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reg = get_registry()
        out = {"warned": sorted(str(w.message).split("'")[1] for w in caught)}
        try:
            reg.lookup("activation", "relu")
        except AmbiguousComponentError as exc:
            out["ambiguous"] = exc.qualified
        out["qualified"] = [
            type(reg.create("activation", n)).__name__
            for n in ("deepnet/relu", "deepnet-duplicate-relu/relu")
        ]
        out["sigmoid"] = float(reg.create("activation", "sigmoid").forward(np.zeros(1))[0])
        x = np.random.default_rng(0).normal(size=(40, 3))
        model = Model([Dense(4, "tanh"), Dense(2, "softmax")])
        out["trained"] = len(model.fit(x, (x[:, 0] > 0).astype(int), epochs=2, seed=0).epochs)
        print(json.dumps(out))
        """
    )
    assert result == {
        "warned": ["deepnet_broken_import", "deepnet_widgets"],
        "ambiguous": ["deepnet/relu", "deepnet-duplicate-relu/relu"],
        "qualified": ["ReLU", "OtherReLU"],
        "sigmoid": 0.5,
        "trained": 2,
    }

"""Plugin loading: in-process plugins, a real entry point, failures, strict mode, disabling."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import attrs
import pytest

from deepnet import Activation, Model, PluginError, hookimpl
from deepnet.core import plugins
from deepnet.core.plugins import PluginWarning, load_plugins

TINY = Path(__file__).parent / "plugins" / "tiny"


@attrs.define
class Square(Activation):
    """z²."""

    def forward(self, z):
        return z * z

    def derivative(self, z, a):
        return 2 * z


def plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def registers_square(register):
    register(Square, name="square")


def info(registry, name):
    return next(p for p in registry.plugins if p.name == name)


def test_builtins_load_through_entry_points():
    registry = load_plugins()
    builtins = [p for p in registry.plugins if p.distribution == "deepnet"]
    assert {p.name for p in builtins} >= {"deepnet.activations", "deepnet.layers"}
    assert all(p.status == "loaded" for p in builtins)
    assert info(registry, "deepnet.activations").hooks == ["deepnet_register_activations"]


def test_a_builtin_module_without_its_entry_point_is_loaded_anyway(monkeypatch):
    """An editable install made before a built-in module existed lacks its entry point."""
    real = plugins.entry_points

    def stale(group):
        return [ep for ep in real(group=group) if ep.name != "deepnet.recipes"]

    monkeypatch.setattr(plugins, "entry_points", stale)
    registry = load_plugins()
    builtins = sorted(p.name for p in registry.plugins if p.distribution == "deepnet")
    assert builtins == sorted(m.replace(".plugins", "") for m in plugins.BUILTIN_MODULES)
    assert registry.lookup("recipe", "default").provenance.plugin == "deepnet.recipes"


def test_in_process_plugin_is_usable_in_a_model(registry_of):
    registry = registry_of(plugin("squares", deepnet_register_activations=registers_square))
    entry = registry.lookup("activation", "square")
    assert entry.provenance.plugin == "squares" and entry.provenance.distribution is None
    model = Model([{"name": "dense", "units": 3, "activation": "square"}]).build((2,), seed=0)
    assert model.predict_proba([[1.0, 2.0]]).min() >= 0


def test_plugin_raising_during_registration_is_reported_and_the_rest_works():
    def broken(register):
        register(Square, name="square")
        raise RuntimeError("boom")

    with pytest.warns(PluginWarning, match="'broken' skipped"):
        registry = load_plugins(extra=[plugin("broken", deepnet_register_activations=broken)])
    record = info(registry, "broken")
    assert record.status == "failed" and "RuntimeError: boom" in record.error
    assert "square" not in registry.names("activation")  # its partial work is undone
    assert "relu" in registry.names("activation")


def test_hook_without_spec_is_reported():
    bad = plugin("widgets", deepnet_register_widgets=lambda register: None)
    with pytest.warns(PluginWarning):
        registry = load_plugins(extra=[bad])
    record = info(registry, "widgets")
    assert record.status == "failed" and "deepnet_register_widgets" in record.error


def test_hook_with_wrong_arguments_is_reported():
    bad = plugin("wrongargs", deepnet_register_layers=lambda register, extra: None)
    with pytest.warns(PluginWarning):
        registry = load_plugins(extra=[bad])
    assert info(registry, "wrongargs").status == "failed"


def test_strict_mode_makes_failures_fatal(monkeypatch):
    def broken(register):
        raise RuntimeError("boom")

    monkeypatch.setenv("DEEPNET_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="boom"):
        load_plugins(extra=[plugin("broken", deepnet_register_activations=broken)])


def test_collision_between_plugins_is_kept_and_reported():
    twin = plugin("twin", deepnet_register_activations=lambda register: register(Square, "relu"))
    registry = load_plugins(extra=[twin])
    providers = registry.collisions()[("activation", "relu")]
    assert {p.provenance.plugin for p in providers} == {"deepnet.activations", "twin"}
    assert registry.create("activation", "twin/relu").__class__ is Square


def test_disable_by_environment(monkeypatch):
    monkeypatch.setenv("DEEPNET_DISABLE_PLUGINS", "squares, deepnet.losses")
    registry = load_plugins(
        extra=[plugin("squares", deepnet_register_activations=registers_square)]
    )
    assert info(registry, "squares").status == "disabled"
    assert info(registry, "deepnet.losses").status == "disabled"
    assert "square" not in registry.names("activation")
    assert registry.names("loss") == []


@pytest.fixture(scope="module")
def tiny_installed(tmp_path_factory):
    """The test distribution under tests/plugins/tiny, really installed (offline) into a dir."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(TINY)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def test_real_entry_point_brings_distribution_name_and_version(tiny_installed, monkeypatch):
    monkeypatch.syspath_prepend(str(tiny_installed))
    registry = load_plugins()
    entry = registry.lookup("activation", "tiny_cube")
    assert (entry.provenance.distribution, entry.provenance.version) == ("deepnet-tiny", "1.2.3")
    assert entry.provenance.plugin == "tiny"
    assert info(registry, "tiny").hooks == ["deepnet_register_activations"]
    monkeypatch.setenv("DEEPNET_DISABLE_PLUGINS", "deepnet-tiny")  # by distribution name
    assert "tiny_cube" not in load_plugins().names("activation")


def test_plugin_failing_on_import_is_reported(tmp_path, monkeypatch):
    dist = tmp_path / "deepnet_crash-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deepnet-crash\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[deepnet]\ncrash = deepnet_crash\n")
    (tmp_path / "deepnet_crash.py").write_text("raise ImportError('missing dependency xyz')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginWarning, match="crash"):
        registry = load_plugins()
    record = info(registry, "crash")
    assert record.status == "failed" and record.error.startswith("import failed")
    assert "missing dependency xyz" in record.error
    assert (record.distribution, record.version) == ("deepnet-crash", "0.1")
    assert "sigmoid" in registry.names("activation")


def test_disabling_an_unknown_plugin_is_warned_about(monkeypatch):
    monkeypatch.setenv("DEEPNET_DISABLE_PLUGINS", "deepnet.losses")
    with pytest.warns(PluginWarning, match="'nosuch' matches no plugin"):
        registry = load_plugins(disabled=["nosuch"])  # adds to the environment's list
    assert info(registry, "deepnet.losses").status == "disabled"

"""Tests of the conformance kit: the built-ins pass, and each kind of broken component fails the
check meant to catch it (and only that one), without crashing the kit."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import pytest

from deepnet.core import plugins
from deepnet.core.components import (
    Activation,
    Callback,
    Initializer,
    Layer,
    Loss,
    Optimizer,
    Regularizer,
    Schedule,
)
from deepnet.core.errors import DeepnetError
from deepnet.plugins.activations import ReLU, Sigmoid, Softmax, Tanh
from deepnet.plugins.initializers import GlorotUniform, Normal
from deepnet.plugins.layers import Dense
from deepnet.plugins.losses import CategoricalCrossEntropy
from deepnet.plugins.optimizers import SGD
from deepnet.plugins.schedules import Constant
from deepnet.testing import (
    CheckResult,
    assert_all_conform,
    assert_conforms,
    check_all,
    check_component,
    entry_name,
    make_plugin,
    registry_with,
    using_registry,
)


def run(kind: str, factory: Any, **options: Any) -> dict[str, CheckResult]:
    """The kit's results for ``factory`` registered as ``probe`` by an in-process plugin."""
    registry = registry_with(make_plugin("probe_plugin", **{kind: {"probe": factory}}))
    results = check_component(kind, "probe", registry, **options)
    assert all(isinstance(r, CheckResult) and "\n" not in r.detail for r in results)
    return {r.check: r for r in results}


def failed(results: dict[str, CheckResult]) -> set[str]:
    return {name for name, r in results.items() if not r.passed}


# -- the built-ins conform ------------------------------------------------------------------
def test_every_builtin_passes_every_check():
    registry = plugins.get_registry()
    checked = [(e, rs) for e, rs in check_all(registry) if e.provenance.distribution == "deepnet"]
    assert len(checked) >= 19
    failures = [f"{e.kind} {entry_name(e, registry)}: {r}" for e, rs in checked for r in rs]
    failures = [f for f in failures if "FAIL" in f]
    assert not failures, "\n".join(failures)
    kinds = {e.kind for e, _ in checked}
    assert kinds == {
        "activation", "loss", "layer", "optimizer", "initializer", "schedule", "recipe"
    }  # fmt: skip


def test_assert_helpers_pass_on_builtins():
    results = assert_conforms("loss", "categorical_cross_entropy")
    assert {r.check for r in results} >= {"gradient", "gradient_fused", "extreme_inputs", "config"}
    assert_all_conform(registry_with(use_entry_points=False))


def test_checks_per_kind():
    names = {r.check for r in check_component("layer", "dense")}
    assert names == {
        "create",
        "gradient_eval",
        "gradient_training",
        "dtype",
        "determinism",
        "config",
    }
    names = {r.check for r in check_component("optimizer", "sgd")}
    assert names == {"create", "descent", "dtype", "determinism", "config"}


# -- broken activations ---------------------------------------------------------------------
@attrs.define
class WrongDerivative(Activation):
    """tanh whose derivative forgets the square."""

    def forward(self, z):
        return np.tanh(z)

    def derivative(self, z, a):
        return 1.0 - a


@attrs.define
class NaiveSigmoid(Sigmoid):
    """The textbook 1 / (1 + e^-z): exp overflows for z < -89 (float32) or -710 (float64)."""

    def forward(self, z):
        return 1.0 / (1.0 + np.exp(-z))


@attrs.define
class Creeping(Activation):
    """A NumPy float64 scalar constant turns float32 inputs into float64 outputs."""

    def forward(self, z):
        return np.float64(0.5) * z

    def derivative(self, z, a):
        return np.full_like(z, 0.5)


@attrs.define
class Noisy(Tanh):
    """Shifted by an offset drawn from an unseeded generator when created."""

    offset: float = attrs.field(init=False, factory=lambda: float(np.random.default_rng().normal()))

    def forward(self, z):
        return np.tanh(z) + self.offset

    def derivative(self, z, a):
        return 1.0 - np.tanh(z) ** 2


@attrs.define
class InPlace(ReLU):
    """Overwrites its input."""

    def forward(self, z):
        return np.maximum(z, 0, out=z)


@attrs.define
class Crashing(Activation):
    """Raises in forward."""

    def forward(self, z):
        raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize(
    ("factory", "check", "words", "also"),
    [
        (WrongDerivative, "gradient", "max relative error", set()),
        (NaiveSigmoid, "extreme_inputs", "overflow", set()),
        (Creeping, "dtype", "float64 for float32", set()),
        (Noisy, "determinism", "differ", set()),
        # Overwriting z also spoils the numeric gradient of the gradient check.
        (InPlace, "determinism", "in place", {"gradient"}),
    ],
)
def test_broken_activation_fails_its_check(factory, check, words, also):
    results = run("activation", factory)
    assert failed(results) == {check, *also}, results
    assert words in results[check].detail


def test_an_exception_becomes_a_one_line_fail():
    results = run("activation", Crashing)
    assert {"gradient", "dtype", "determinism", "extreme_inputs"} <= failed(results)
    assert results["gradient"].detail == "RuntimeError: boom second line"
    assert results["config"].passed


# -- broken losses, layers, regularizers ----------------------------------------------------
@attrs.define
class Float32Loss(CategoricalCrossEntropy):
    """Returns a NumPy float32 scalar."""

    def forward(self, a, y):
        return np.float32(super().forward(a, y))


@attrs.define
class UnscaledMean(CategoricalCrossEntropy):
    """Claims the mean but sums."""

    def forward(self, a, y):
        return super().forward(a, y) * len(a)

    def backward(self, a, y):
        return super().backward(a, y) * len(a)

    def fused_backward(self, a, y):
        return a - y


@attrs.define
class LogOfZero(Loss):
    """Squared error on log a: log(0) is -inf."""

    def forward(self, a, y):
        return float(((np.log(a) - y) ** 2).sum() / len(a))

    def backward(self, a, y):
        return 2 * (np.log(a) - y) / a / len(a)


def test_broken_losses_fail_their_checks():
    # The float32 rounding of the loss also spoils its numeric gradients.
    expected = {"dtype", "determinism", "extreme_inputs", "gradient", "gradient_fused"}
    assert failed(run("loss", Float32Loss)) == expected
    assert failed(run("loss", UnscaledMean)) == {"reduction"}
    results = run("loss", LogOfZero)
    assert failed(results) == {"extreme_inputs"}
    assert "divide by zero" in results["extreme_inputs"].detail


@attrs.define(eq=False)
class WrongWeightGradient(Dense):
    """Dense whose dW is transposed-and-back wrong (scaled by 2)."""

    def backward(self, dz, cache, need_dx=True):
        dx, grads = super().backward(dz, cache, need_dx)
        return dx, {**grads, "W": 2 * grads["W"]}


@attrs.define(eq=False)
class Float64Bias(Dense):
    """Dense whose bias is always float64: float32 inputs come out float64."""

    def build(self, input_shape, rng, dtype):
        out = super().build(input_shape, rng, dtype)
        self.params["b"] = self.params["b"].astype(np.float64)
        return out


@attrs.define(eq=False)
class ImagesOnly(Layer):
    """Scales (N, C, H, W) images by a parameter; refuses other shapes."""

    def build(self, input_shape, rng, dtype):
        if len(input_shape) != 3:
            raise ValueError("images only")
        self.params["s"] = np.ones((), dtype)
        return tuple(input_shape)

    def forward(self, x, training=False):
        return x * self.params["s"], x

    def backward(self, dz, cache, need_dx=True):
        return dz * self.params["s"], {"s": np.asarray((dz * cache).sum())}


def test_broken_layers_fail_their_checks():
    results = run("layer", WrongWeightGradient)
    assert failed(results) == {"gradient_eval", "gradient_training"}
    assert "W:" in results["gradient_eval"].detail
    results = run("layer", Float64Bias)
    assert failed(results) == {"dtype"}
    assert "float64 for float32" in results["dtype"].detail


def test_layer_input_shapes_are_tried_or_given():
    assert not failed(run("layer", ImagesOnly))
    results = run("layer", ImagesOnly, input_shape=(5,))
    assert "images only" in results["dtype"].detail


@attrs.define
class WrongL2(Regularizer):
    """lam/2·Σw² with the gradient of lam·Σw²."""

    lam: float = 0.1

    def penalty(self, w):
        return 0.5 * self.lam * float((w * w).sum())

    def gradient(self, w):
        return 2 * self.lam * w


@attrs.define
class Shrink(Regularizer):
    """A constraint that halves the weights every time: not a projection."""

    def constrain(self, w):
        w *= 0.5


def test_broken_regularizers_fail_their_checks():
    assert failed(run("regularizer", WrongL2)) == {"gradient"}
    assert failed(run("regularizer", Shrink)) == {"constraint"}


# -- broken optimizers, initializers, schedules, callbacks ----------------------------------
@attrs.define
class Ascent(SGD):
    """Goes uphill."""

    def step(self, params, grads, state, lr):
        for p, g in zip(params, grads, strict=True):
            p += lr * g


@attrs.define
class Rebinding(SGD):
    """Replaces the arrays instead of updating them."""

    def step(self, params, grads, state, lr):
        for i, g in enumerate(grads):
            params[i] = params[i] - lr * g


@attrs.define
class Float64State(Optimizer):
    """Keeps float64 velocities whatever the params' dtype."""

    lr: float = 0.01

    def init(self, params):
        return [{"velocity": np.zeros(p.shape)} for p in params]

    def step(self, params, grads, state, lr):
        for p, g, s in zip(params, grads, state, strict=True):
            s["velocity"] *= 0.5
            s["velocity"] += g
            p -= lr * s["velocity"]


def test_broken_optimizers_fail_their_checks():
    results = run("optimizer", Ascent)
    assert failed(results) == {"descent"}
    assert "no decrease" in results["descent"].detail
    results = run("optimizer", Rebinding)
    assert "in place" in results["descent"].detail
    results = run("optimizer", Float64State)
    assert failed(results) == {"dtype"}
    assert "velocity" in results["dtype"].detail


@attrs.define
class TwiceTheStd(Normal):
    """Documents std but draws twice as wide."""

    def __call__(self, shape, rng, fan_in, fan_out):
        return rng.normal(self.mean, 2 * self.std, size=shape)


@attrs.define
class Float32Init(Initializer):
    """Returns float32 although the contract says float64."""

    def __call__(self, shape, rng, fan_in, fan_out):
        return rng.normal(size=shape).astype(np.float32)


def test_broken_initializers_fail_their_checks():
    assert failed(run("initializer", TwiceTheStd)) == {"variance"}
    assert failed(run("initializer", Float32Init)) == {"dtype"}


@attrs.define
class NumpyRate(Constant):
    """Returns a NumPy scalar, which would make float32 updates float64."""

    def __call__(self, base_lr, epoch, total):
        return np.float64(base_lr)


@attrs.define
class DecayToZero(Schedule):
    """Linear decay that hits 0 half-way."""

    def __call__(self, base_lr, epoch, total):
        return max(base_lr * (1 - 2 * epoch / total), 0.0)


def test_broken_schedules_fail_their_checks():
    results = run("schedule", NumpyRate)
    assert failed(results) == {"lr_range"}
    assert "float64" in results["lr_range"].detail
    assert failed(run("schedule", DecayToZero)) == {"lr_range"}


@attrs.define
class ReturnsNone(Callback):
    """Forgets to return whether to stop."""

    def on_epoch_end(self, model, epoch, logs):
        return None


def test_broken_callback_fails_interface():
    assert failed(run("callback", ReturnsNone)) == {"interface"}
    assert not failed(run("callback", Callback))


@attrs.define
class CountsEpochs(Callback):
    """Keeps a count across epochs; subclasses break its state round trip."""

    n: int = attrs.field(init=False, default=0)

    def on_epoch_end(self, model, epoch, logs):
        self.n += 1
        return False

    def state(self):
        return {"n": self.n}

    def load_state(self, model, state):
        self.n = state["n"]


class ForgetsToLoad(CountsEpochs):
    def load_state(self, model, state):
        pass


class StateIsAList(CountsEpochs):
    def state(self):
        return {"n": [self.n]}


def test_callback_state_must_round_trip_through_json_and_load_state():
    results = run("callback", CountsEpochs)
    assert not failed(results) and "1 JSON values and 0 arrays" in results["state"].detail
    results = run("callback", ForgetsToLoad)
    assert failed(results) == {"state"}
    assert "state() after 3 epochs changed in the round trip: {'n': 3} -> {'n': 0}" in str(results)
    results = run("callback", StateIsAList)
    assert failed(results) == {"state"} and "it is a list, not a number" in results["state"].detail


# -- creation and configs -------------------------------------------------------------------
@attrs.define
class SetField(Tanh):
    """A hyperparameter that JSON cannot hold."""

    tags: Any = attrs.field(factory=lambda: frozenset({"a"}))


@attrs.define
class NeedsName(Tanh):
    """A required string hyperparameter the kit cannot guess."""

    label: str


@attrs.define
class NeedsNameHinted(NeedsName):
    """The same, telling the kit what to try."""

    conformance: ClassVar[dict] = {"config": {"label": "x"}}


@attrs.define
class Unregistered(Tanh):
    """Made by a factory function but never registered itself."""


def tanh_factory():
    """A function, not a class: its instances are not traceable to a registered name."""
    return Unregistered()


def test_config_and_creation_failures():
    results = run("activation", SetField)
    assert failed(results) == {"config"}
    assert "cannot serialize" in results["config"].detail
    assert "not a registered component" in run("activation", tanh_factory)["config"].detail
    results = run("activation", NeedsName)
    assert list(results) == ["create"]
    assert "conformance" in results["create"].detail
    assert not failed(run("activation", NeedsNameHinted))
    assert not failed(run("activation", NeedsName, config={"label": "y"}))
    assert not failed(run("layer", Dense, config={"units": 2, "activation": "tanh"}))


def test_wrong_kind_and_unknown_name():
    assert failed(run("activation", SGD)) == {"create"}
    results = check_component("activation", "nope")
    assert [(r.check, r.passed) for r in results] == [("lookup", False)]
    assert "Available activations" in results[0].detail


# -- collisions, registries, assertion messages ---------------------------------------------
def test_check_all_checks_every_provider_of_a_collision():
    registry = registry_with(make_plugin("other", activation={"relu": WrongDerivative}))
    relus = [
        (e, rs) for e, rs in check_all(registry) if e.kind == "activation" and e.name == "relu"
    ]
    assert {entry_name(e, registry) for e, _ in relus} == {"deepnet/relu", "other/relu"}
    verdicts = {entry_name(e, registry): {r.check for r in rs if not r.passed} for e, rs in relus}
    assert verdicts == {"deepnet/relu": set(), "other/relu": {"gradient"}}
    assert check_component("activation", "relu", registry)[0].check == "lookup"
    assert_conforms("activation", "deepnet/relu", registry)
    with pytest.raises(AssertionError, match=r"activation other/relu: FAIL gradient"):
        assert_all_conform(registry)


def test_assert_conforms_lists_failed_checks():
    registry = registry_with(make_plugin("bad", activation={"bad": NaiveSigmoid}))
    with pytest.raises(AssertionError) as info:
        assert_conforms("activation", "bad", registry)
    message = str(info.value)
    assert "fails 1 of 6 conformance checks" in message
    assert "FAIL extreme_inputs" in message
    assert "gradient" not in message


def test_using_registry_sets_and_restores():
    saved = plugins._registry
    registry = registry_with()
    with using_registry(registry) as active:
        assert active is registry
        assert plugins.get_registry() is registry
    assert plugins._registry is saved


def test_checks_resolve_through_the_given_registry():
    # Dense builds with "glorot_uniform" from the process registry: the kit swaps the given
    # one in, where a second provider makes that name ambiguous.
    registry = registry_with(make_plugin("twin", initializer={"glorot_uniform": GlorotUniform}))
    results = {r.check: r for r in check_component("layer", "dense", registry)}
    assert "registered by 2 plugins" in results["gradient_eval"].detail
    assert not failed(run("layer", Dense))


def test_make_plugin_rejects_unknown_kinds():
    with pytest.raises(DeepnetError, match="unknown component kind 'widget'"):
        make_plugin("x", widget={"w": Tanh})


def test_callback_check_survives_a_softmax_collision():
    plugin = make_plugin("other", activation={"softmax": Softmax}, callback={"probe": Callback})
    results = check_component("callback", "probe", registry_with(plugin))
    assert all(r.passed for r in results), results

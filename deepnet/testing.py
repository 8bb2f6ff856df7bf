"""Conformance kit: does a component honour the contract of its kind? For plugin authors and CI.

::

    from deepnet.testing import assert_conforms, registry_with
    import my_plugin

    def test_my_activation():
        assert_conforms("activation", "my_act", registry_with(my_plugin))

Per kind the kit checks the gradient numerically in float64 (:mod:`deepnet.core.gradcheck`), the
dtype and shape contract (float32 in, float32 out: no float64 creep; float64 in, float64 out),
determinism, the JSON config round trip, a callback's ``state()`` round trip (as checkpoints
save it), and silence on extreme inputs; a recipe must resolve all its components, turn raw
pixel rows ``(N, 784)`` into ``(N, classes)`` outputs, and train one seeded epoch on a few.
Every check runs with warnings as errors and NumPy's overflow, invalid and divide-by-zero errors
raised; whatever goes wrong becomes a FAIL :class:`CheckResult` with a one-line detail, so no
component stops the run.

Components with required hyperparameters the kit cannot guess, or layers that need a particular
input shape, say how to try them with a class attribute, e.g.
``conformance = {"config": {"target_shape": (2, 3)}, "input_shape": (6,)}``;
:func:`check_component` also takes both as arguments.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from deepnet.core import gradcheck
from deepnet.core import plugins as _plugins
from deepnet.core.errors import DeepnetError
from deepnet.core.hookspecs import hookimpl
from deepnet.core.registry import REQUIRED, Entry, Registry

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
F64 = np.dtype(np.float64)
#: Magnitudes an activation must take, with either sign, in both dtypes without a warning.
EXTREMES = (1e4, 80.0, 1e38)
#: Input shapes (without the batch) tried in turn until a layer builds: features, then images.
LAYER_INPUT_SHAPES = ((6,), (2, 6, 6))
BATCH = 3
#: A recipe is tried on raw MNIST-sized pixel rows (0..255), RECIPE_SAMPLES of them to train on.
RECIPE_INPUT_SHAPE = (784,)
RECIPE_SAMPLES = 16
#: Values for required hyperparameters without a default, by annotated type.
GUESSES = {"int": 4, "float": 0.5, "bool": False}
CALLBACK_METHODS = ("on_train_begin", "on_batch_end", "on_epoch_end", "on_train_end")
_FANS = {
    "fan_in": lambda fan_in, fan_out: fan_in,
    "fan_out": lambda fan_in, fan_out: fan_out,
    "fan_avg": lambda fan_in, fan_out: (fan_in + fan_out) / 2,
}

Thunk = Callable[[], "str | None"]


@attrs.frozen
class CheckResult:
    """One check of one component: whether it passed, and a one-line detail either way."""

    check: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.check}: {self.detail}"


# -- running checks -------------------------------------------------------------------------
class _Fail(Exception):
    """A check's own verdict, as opposed to an exception raised by the component."""


def _expect(condition: Any, message: str) -> None:
    if not condition:
        raise _Fail(message)


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def _strict() -> Iterator[None]:
    # What NumPy warns about by default (overflow, invalid, divide by zero) raises here.
    # Underflow to zero (exp(-1e4)) is benign and silent by default, so it stays silent.
    with (
        warnings.catch_warnings(),
        np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"),
    ):
        warnings.simplefilter("error")
        yield


@contextlib.contextmanager
def _during(what: str) -> Iterator[None]:
    """Prefix whatever fails inside with ``what`` was being done."""
    try:
        yield
    except _Fail as exc:
        raise _Fail(f"{what}: {exc}") from None
    except Exception as exc:
        raise _Fail(f"{what}: {type(exc).__name__}: {exc}") from exc


def _run(check: str, fn: Thunk) -> CheckResult:
    try:
        with _strict():
            detail = fn()
    except _Fail as exc:
        return CheckResult(check, False, _one_line(exc))
    except Exception as exc:
        return CheckResult(check, False, _one_line(f"{type(exc).__name__}: {exc}"))
    return CheckResult(check, True, _one_line(detail or "ok"))


# -- shared assertions ----------------------------------------------------------------------
def _expect_array(what: str, got: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    _expect(isinstance(got, np.ndarray), f"{what} returned {type(got).__name__}, not an ndarray")
    _expect(got.shape == tuple(shape), f"{what} has shape {got.shape}, expected {tuple(shape)}")
    _expect(got.dtype == dtype, f"{what} is {got.dtype} for {dtype} inputs")


def _expect_finite(what: str, got: Any) -> None:
    _expect(np.isfinite(got).all(), f"{what} is not finite: {got!r}")


def _expect_float(what: str, got: Any) -> float:
    # np.float32 is not a float: it would turn the training loss and history into float32.
    _expect(isinstance(got, float), f"{what} returned {type(got).__name__}, not a Python float")
    _expect(math.isfinite(got), f"{what} returned {got}")
    return float(got)


def _identical(a: Any, b: Any) -> bool:
    """Bit-identical nested arrays, dicts, sequences and scalars (NaN equal to NaN)."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_identical, a, b))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _expect_deterministic(first: Any, second: Any, inputs: list[tuple[Any, Any]]) -> str:
    """Two runs agree bit for bit and left their inputs (given with copies) untouched."""
    for now, before in inputs:
        _expect(np.array_equal(now, before), "modified its input array in place")
    _expect(_identical(first, second), "two runs with the same seed and inputs differ")
    return "identical results from identical inputs and seeds; inputs untouched"


def _gradient(result: gradcheck.GradCheck) -> str:
    _expect(result.passed, f"{result} (float64 central differences, tolerance {result.tolerance})")
    return f"max relative error {result.max_error:.1e}"


def _floating_state(state: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    for name, value in state.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            yield name, value


# -- creating the component -----------------------------------------------------------------
def _hints(entry: Entry) -> dict[str, Any]:
    hints = getattr(entry.factory, "conformance", None)
    return dict(hints) if isinstance(hints, dict) else {}


def _create_kwargs(entry: Entry, config: dict[str, Any] | None) -> dict[str, Any]:
    """Hyperparameters to try ``entry`` with: given, hinted, else guessed for required ones."""
    kwargs = {**_hints(entry).get("config", {}), **(config or {})}
    factory = entry.factory  # a class, or a recipe instance (no parameters to guess)
    is_class = isinstance(factory, type) and attrs.has(factory)
    fields = {f.name: f for f in attrs.fields(factory)} if is_class else {}
    for param in entry.params:
        if param.default is not REQUIRED or param.name in kwargs:
            continue
        annotation = getattr(fields[param.name].type, "__name__", fields[param.name].type)
        _expect(
            annotation in GUESSES,
            f"required parameter {param.name!r} ({annotation}) has no default; give an example "
            "with the class attribute conformance = {'config': {...}} or config=",
        )
        kwargs[param.name] = GUESSES[annotation]
    return kwargs


def _config_round_trip(make: Callable[[], Any], registry: Registry, kind: str) -> str:
    obj = make()
    config = registry.config_of(obj)
    text = json.dumps(config, allow_nan=False)
    again = registry.create(kind, json.loads(text))
    _expect(type(again) is type(obj), f"its config made a {type(again).__name__}")
    back = registry.config_of(again)
    _expect(back == config, f"config changed in the JSON round trip: {config} -> {back}")
    return text


# -- activations ----------------------------------------------------------------------------
def _activation_checks(make: Callable[[], Any], **_: Any) -> list[tuple[str, Thunk]]:
    def gradient() -> str:
        return _gradient(gradcheck.check_activation(make()))

    def dtype() -> str:
        act, rng = make(), np.random.default_rng(0)
        for dt in DTYPES:
            for shape in ((4, 7), (2, 3, 5)):
                z = rng.normal(0.0, 2.0, shape).astype(dt)
                with _during(f"{dt} input of shape {shape}"):
                    a = act.forward(z)
                    _expect_array("forward", a, shape, dt)
                    da = rng.normal(size=shape).astype(dt)
                    _expect_array("backward", act.backward(z, a, da), shape, dt)
        return "float32 and float64 kept; shapes (N, K) and (N, d1, d2) kept"

    def determinism() -> str:
        rng = np.random.default_rng(1)
        z, da = rng.normal(0.0, 2.0, (4, 7)), rng.normal(size=(4, 7))
        z0, da0 = z.copy(), da.copy()
        runs = []
        for act in (make(), make()):
            a = act.forward(z)
            runs.append((a, act.backward(z, a, da)))
        return _expect_deterministic(*runs, [(z, z0), (da, da0)])

    def extreme_inputs() -> str:
        act = make()
        for dt in DTYPES:
            z = np.array([[v, -v, 0.0, 1.0] for v in EXTREMES], dt)
            with _during(f"{dt} input ±{EXTREMES}"):
                a = act.forward(z)
                _expect_finite("forward", a)
                _expect_finite("backward", act.backward(z, a, np.ones_like(z)))
        return f"finite and silent at ±{EXTREMES} in float32 and float64"

    return [
        ("gradient", gradient),
        ("dtype", dtype),
        ("determinism", determinism),
        ("extreme_inputs", extreme_inputs),
    ]


# -- losses ---------------------------------------------------------------------------------
def _outputs(dtype: np.dtype, shape: tuple[int, int] = (5, 4), seed: int = 0) -> tuple[Any, Any]:
    """Softmax outputs ``a`` and one-hot targets ``y``, both (N, K) in ``dtype``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=shape)
    a = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.eye(shape[1])[rng.integers(0, shape[1], size=shape[0])]
    return a.astype(dtype), y.astype(dtype)


def _loss_checks(make: Callable[[], Any], registry: Registry, **_: Any) -> list[tuple[str, Thunk]]:
    fused = getattr(make(), "fused_activation", None)

    def evaluate(loss: Any, a: Any, y: Any) -> tuple[float, Any, Any]:
        value = _expect_float("forward", loss.forward(a, y))
        return value, loss.backward(a, y), loss.fused_backward(a, y) if fused else None

    def gradient() -> str:
        return _gradient(gradcheck.check_loss(make()))

    def gradient_fused() -> str:
        act = registry.create("activation", fused)
        return f"with {fused}: " + _gradient(gradcheck.check_fused(make(), act))

    def dtype() -> str:
        loss = make()
        for dt in DTYPES:
            a, y = _outputs(dt)
            with _during(f"{dt} outputs"):
                _, da, dz = evaluate(loss, a, y)
                _expect_array("backward", da, a.shape, dt)
                if fused:
                    _expect_array("fused_backward", dz, a.shape, dt)
        return "forward a Python float; gradients (N, K) in the outputs' dtype"

    def reduction() -> str:
        loss = make()
        mode = getattr(loss, "reduction", None)
        if mode not in ("mean", "sum"):
            return f"reduction {mode!r}: nothing to compare"
        a, y = _outputs(F64)
        once = loss.forward(a, y)
        twice = loss.forward(np.concatenate([a, a]), np.concatenate([y, y]))
        expected = once if mode == "mean" else 2 * once
        _expect(
            math.isclose(twice, expected, rel_tol=1e-9),
            f"reduction={mode!r}: the batch repeated twice gives {twice}, expected {expected}",
        )
        return f"reduction={mode!r} scales with the batch as documented"

    def determinism() -> str:
        a, y = _outputs(F64, seed=1)
        a0, y0 = a.copy(), y.copy()
        runs = [evaluate(make(), a, y) for _ in range(2)]
        return _expect_deterministic(*runs, [(a, a0), (y, y0)])

    def extreme_inputs() -> str:
        loss = make()
        for dt in DTYPES:
            _, y = _outputs(dt)
            for label, a in (("a = y", y.copy()), ("a = 1 - y", 1 - y)):
                with _during(f"{dt} outputs {label} (exactly 0 and 1)"):
                    _, da, dz = evaluate(loss, a, y)
                    _expect_finite("backward", da)
                    if fused:
                        _expect_finite("fused_backward", dz)
        return "finite and silent on outputs exactly 0 and 1"

    checks: list[tuple[str, Thunk]] = [("gradient", gradient)]
    if fused:
        checks.append(("gradient_fused", gradient_fused))
    checks += [
        ("dtype", dtype),
        ("reduction", reduction),
        ("determinism", determinism),
        ("extreme_inputs", extreme_inputs),
    ]
    return checks


# -- layers ---------------------------------------------------------------------------------
def _layer_input_shape(make: Callable[[], Any], given: Any) -> tuple[int, ...]:
    candidates = [tuple(given)] if given is not None else list(LAYER_INPUT_SHAPES)
    errors = []
    for shape in candidates:
        try:
            out = make().build(shape, np.random.default_rng(0), F64)
        except Exception as exc:
            errors.append(f"{shape}: {type(exc).__name__}: {exc}")
            continue
        _expect(isinstance(out, tuple), f"build returned {out!r}, not the output shape tuple")
        return shape
    raise _Fail(
        f"build fails for every input shape tried ({'; '.join(errors)}); "
        "declare one with the class attribute conformance = {'input_shape': (...)}"
    )


def _layer_checks(
    make: Callable[[], Any], input_shape: Any = None, **_: Any
) -> list[tuple[str, Thunk]]:
    found: list[tuple[int, ...]] = []

    def shape() -> tuple[int, ...]:
        if not found:
            found.append(_layer_input_shape(make, input_shape))
        return found[0]

    def gradient(training: bool) -> Thunk:
        def check() -> str:
            s = shape()
            result = gradcheck.check_layer(make(), input_shape=s, batch=BATCH, training=training)
            return f"input (N, {', '.join(map(str, s))}): " + _gradient(result)

        return check

    def dtype() -> str:
        rng = np.random.default_rng(0)
        s = shape()
        for dt in DTYPES:
            for training in (False, True):
                layer = make()
                with _during(f"{dt}, training={training}"):
                    out = tuple(layer.build(s, np.random.default_rng(1), dt))
                    for name, p in layer.params.items():
                        _expect_array(f"param {name}", p, p.shape, dt)
                    x = rng.normal(size=(BATCH, *s)).astype(dt)
                    z, cache = layer.forward(x, training)
                    _expect_array("forward", z, (BATCH, *out), dt)
                    dx, grads = layer.backward(rng.normal(size=z.shape).astype(dt), cache)
                    _expect_array("backward dx", dx, x.shape, dt)
                    _expect(
                        set(grads) == set(layer.params),
                        f"gradients {sorted(grads)} for params {sorted(layer.params)}",
                    )
                    for name, g in grads.items():
                        _expect_array(f"gradient {name}", g, layer.params[name].shape, dt)
                    for name, v in _floating_state(layer.state):
                        _expect(v.dtype == dt, f"state {name} is {v.dtype}")
        return f"input (N, {', '.join(map(str, s))}): params, z, dx, grads and state keep the dtype"

    def determinism() -> str:
        s = shape()
        x = np.random.default_rng(3).normal(size=(BATCH, *s))
        x0 = x.copy()
        runs = []
        for _ in range(2):
            layer = make()
            layer.build(s, np.random.default_rng(7), F64)
            params = {k: v.copy() for k, v in layer.params.items()}
            evaluation = layer.forward(x, False)[0].copy()
            training = layer.forward(x, True)[0].copy()
            runs.append(
                (params, evaluation, training, {k: v.copy() for k, v in layer.state.items()})
            )
        return _expect_deterministic(*runs, [(x, x0)])

    return [
        ("gradient_eval", gradient(False)),
        ("gradient_training", gradient(True)),
        ("dtype", dtype),
        ("determinism", determinism),
    ]


# -- regularizers ---------------------------------------------------------------------------
def _regularizer_checks(make: Callable[[], Any], **_: Any) -> list[tuple[str, Thunk]]:
    def evaluate(reg: Any, w: Any) -> tuple[float, Any]:
        penalty = _expect_float("penalty", reg.penalty(w))
        _expect(penalty >= 0, f"penalty is negative: {penalty}")
        return penalty, reg.gradient(w)

    def gradient() -> str:
        return _gradient(gradcheck.check_regularizer(make()))

    def dtype() -> str:
        reg, rng = make(), np.random.default_rng(0)
        for dt in DTYPES:
            w = rng.normal(size=(5, 4)).astype(dt)
            with _during(f"{dt} weights"):
                _, g = evaluate(reg, w)
                if g is not None:
                    _expect_array("gradient", g, w.shape, dt)
                reg.constrain(w)
                _expect_finite("constrained weights", w)
        return "penalty a Python float >= 0; gradient None or in the weights' shape and dtype"

    def constraint() -> str:
        reg = make()
        w = np.random.default_rng(2).normal(0.0, 10.0, size=(5, 4))
        before = w.copy()
        reg.constrain(w)
        _expect_finite("constrained weights", w)
        once = w.copy()
        reg.constrain(w)
        _expect(np.allclose(w, once, rtol=1e-6, atol=1e-12), "constrain is not idempotent")
        return "no constraint" if np.array_equal(before, once) else "constraint is idempotent"

    def determinism() -> str:
        w = np.random.default_rng(1).normal(size=(5, 4))
        w0 = w.copy()
        runs = [evaluate(make(), w) for _ in range(2)]
        return _expect_deterministic(*runs, [(w, w0)])

    return [
        ("gradient", gradient),
        ("dtype", dtype),
        ("constraint", constraint),
        ("determinism", determinism),
    ]


# -- optimizers -----------------------------------------------------------------------------
def _descend(opt: Any, dtype: np.dtype, steps: int = 20) -> tuple[float, float, list, list]:
    """``steps`` updates on ``Σ h/2 (p - c)²`` with curvatures h in [1, 10] (two arrays).

    Returns the loss before and after, the params and the optimizer state.
    """
    rng = np.random.default_rng(0)
    shapes = ((3, 4), (4,))
    centers = [rng.normal(size=s) for s in shapes]
    curvatures = [rng.uniform(1.0, 10.0, size=s) for s in shapes]
    params = [(c + rng.normal(size=c.shape)).astype(dtype) for c in centers]
    originals = list(params)

    def loss() -> float:
        return sum(
            float((h / 2 * (p - c) ** 2).sum())
            for p, c, h in zip(params, centers, curvatures, strict=True)
        )

    state = opt.init(params)
    _expect(
        isinstance(state, list) and len(state) == len(params),
        f"init returned {type(state).__name__}, not one state dict per param",
    )
    lr = float(getattr(opt, "lr", 0.01))
    start = loss()
    for _ in range(steps):
        grads = [
            (h * (p - c)).astype(dtype) for p, c, h in zip(params, centers, curvatures, strict=True)
        ]
        opt.step(params, grads, state, lr)
    _expect(
        all(p is q for p, q in zip(params, originals, strict=True)),
        "step replaced arrays in the params list instead of updating them in place",
    )
    return start, loss(), params, state


def _optimizer_checks(make: Callable[[], Any], **_: Any) -> list[tuple[str, Thunk]]:
    def descent() -> str:
        ends = []
        for dt in DTYPES:
            with _during(f"{dt} params"):
                start, end, _, _ = _descend(make(), dt)
            _expect(
                end < start, f"{dt} params: quadratic loss {start:.6g} -> {end:.6g}, no decrease"
            )
            ends.append(f"{dt}: {start:.4g} -> {end:.4g}")
        return "20 steps on a convex quadratic: " + ", ".join(ends)

    def dtype() -> str:
        for dt in DTYPES:
            with _during(f"{dt} params"):
                _, _, params, state = _descend(make(), dt)
                for i, (p, s) in enumerate(zip(params, state, strict=True)):
                    _expect(p.dtype == dt, f"param {i} became {p.dtype}")
                    _expect_finite(f"param {i}", p)
                    _expect(isinstance(s, dict), f"state {i} is a {type(s).__name__}, not a dict")
                    for name, v in _floating_state(s):
                        _expect(v.dtype == dt, f"state {i}[{name!r}] is {v.dtype}")
        return "params updated in place; params and state keep float32 and float64"

    def determinism() -> str:
        runs = [_descend(make(), F64)[2:] for _ in range(2)]
        return _expect_deterministic(*runs, [])

    return [("descent", descent), ("dtype", dtype), ("determinism", determinism)]


# -- initializers ---------------------------------------------------------------------------
FAN_IN, FAN_OUT = 200, 100


def _expected_moments(init: Any, fan_in: int, fan_out: int) -> tuple[float, float] | None:
    """The documented (mean, variance): from ``variance(fan_in, fan_out)``, the variance-scaling
    attributes ``scale`` and ``mode`` (scale / fan), or ``std`` (and ``mean``); else None."""
    mean = getattr(init, "mean", 0.0)
    mean = float(mean) if isinstance(mean, numbers.Real) else 0.0
    if callable(getattr(init, "variance", None)):
        return mean, float(init.variance(fan_in, fan_out))
    scale, mode = getattr(init, "scale", None), getattr(init, "mode", None)
    if isinstance(scale, numbers.Real) and mode in _FANS:
        return 0.0, scale / max(_FANS[mode](fan_in, fan_out), 1)
    std = getattr(init, "std", None)
    if isinstance(std, numbers.Real):
        return mean, float(std) ** 2
    return None


def _initializer_checks(make: Callable[[], Any], **_: Any) -> list[tuple[str, Thunk]]:
    def draw(seed: int = 0, shape: tuple[int, ...] = (FAN_IN, FAN_OUT)) -> Any:
        return make()(shape, np.random.default_rng(seed), FAN_IN, FAN_OUT)

    def dtype() -> str:
        for shape in ((FAN_IN, FAN_OUT), (FAN_OUT,)):
            w = draw(shape=shape)
            _expect_array(f"init{shape}", w, shape, F64)
            _expect_finite(f"init{shape}", w)
        return "float64 arrays of the requested shapes, finite"

    def variance() -> str:
        moments = _expected_moments(make(), FAN_IN, FAN_OUT)
        if moments is None:
            return "no documented variance to compare (define variance(fan_in, fan_out))"
        mean, var = moments
        w = draw()
        if var == 0:
            _expect(np.all(w == mean), f"expected every value {mean}")
            return f"constant {mean}"
        # 20,000 draws: the sample variance is within 10 % and the mean within 5 standard errors.
        _expect(abs(w.var() - var) <= 0.1 * var, f"variance {w.var():.4g}, documented {var:.4g}")
        tolerance = 5 * math.sqrt(var / w.size)
        _expect(abs(w.mean() - mean) <= tolerance, f"mean {w.mean():.4g}, documented {mean:.4g}")
        return (
            f"variance {w.var():.4g} (documented {var:.4g}) for fan_in {FAN_IN}, fan_out {FAN_OUT}"
        )

    def determinism() -> str:
        return _expect_deterministic(draw(5), draw(5), [])

    return [("dtype", dtype), ("variance", variance), ("determinism", determinism)]


# -- schedules ------------------------------------------------------------------------------
def _schedule_checks(make: Callable[[], Any], **_: Any) -> list[tuple[str, Thunk]]:
    def curve(sched: Any, total: int) -> list[float]:
        return [sched(0.1, epoch, total) for epoch in np.linspace(0, total, 41).tolist()]

    def lr_range() -> str:
        sched = make()
        for total in (1, 3, 20):
            for i, lr in enumerate(curve(sched, total)):
                epoch = total * i / 40
                # A NumPy scalar rate would turn float32 parameter updates into float64.
                _expect(type(lr) is float, f"returned {type(lr).__name__}, not a Python float")
                _expect(math.isfinite(lr), f"lr {lr} at epoch {epoch} of {total}")
                # Training never reaches epoch == total, where decay to 0 is legitimate.
                _expect(
                    lr > 0 or (epoch == total and lr == 0), f"lr {lr} at epoch {epoch} of {total}"
                )
        return "finite, positive Python floats over [0, total) for totals 1, 3, 20"

    def determinism() -> str:
        return _expect_deterministic(curve(make(), 3), curve(make(), 3), [])

    return [("lr_range", lr_range), ("determinism", determinism)]


# -- callbacks ------------------------------------------------------------------------------
def _tiny_model() -> Any:
    from deepnet.core.model import Model  # the model imports the registry: import on use

    # Qualified built-ins: a name another plugin also registers must not fail a callback.
    layer = {"name": "deepnet/dense", "units": 3, "activation": "deepnet/softmax"}
    model = Model([layer], loss="deepnet/categorical_cross_entropy", dtype="float64")
    return model.build((4,), seed=0)


def _replay(cb: Any, model: Any, epochs: int = 10) -> list[Any]:
    """Up to ``epochs`` epochs of made-up metrics, until one stops; what each returned."""
    returned = []
    # Accuracy rises, then falls: the shape that makes early stopping act.
    for epoch, acc in enumerate((0.5, 0.7, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45)[:epochs]):
        cb.on_batch_end(model, epoch, 0, 1, 1.0 - acc)
        logs = {
            "epoch": epoch + 1, "loss": 1.0 - acc, "train_accuracy": acc, "dev_loss": 1.1 - acc,
            "dev_accuracy": acc - 0.05, "lr": 0.1, "seconds": 0.01,
        }  # fmt: skip
        returned.append(cb.on_epoch_end(model, epoch, logs))
        if returned[-1]:
            break
        model.layers[0].params["W"] += 0.1  # as if training moved the weights
    return returned


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(v, b[k]) and v.dtype == b[k].dtype
        if isinstance(v, np.ndarray)
        else type(v) is type(b[k]) and v == b[k]
        for k, v in a.items()
    )


def _callback_checks(make: Callable[[], Any], **_: Any) -> list[tuple[str, Thunk]]:
    def interface() -> str:
        cb = make()
        missing = [m for m in CALLBACK_METHODS if not callable(getattr(cb, m, None))]
        _expect(not missing, f"missing methods {missing}")
        model = _tiny_model()
        cb.on_train_begin(model)
        returned = _replay(cb, model)
        cb.on_train_end(model)
        bad = [r for r in returned if not isinstance(r, bool | np.bool_)]
        _expect(not bad, f"on_epoch_end returned {bad[0]!r}, not a bool" if bad else "")
        return f"all methods present; on_epoch_end returns bools ({len(returned)} epochs run)"

    def state() -> str:
        from deepnet.core.checkpoint import split_state  # imports the registry: on use

        if not callable(getattr(make(), "state", None)):
            return "no state() (checkpoints record nothing of it)"
        # As a checkpoint does: state() in JSON and arrays, loaded into a fresh callback that
        # has begun training; at the start and a few epochs in (a best, with its weights).
        for epochs in (0, 3):
            model, cb, fresh = _tiny_model(), make(), make()
            cb.on_train_begin(model)
            _replay(cb, model, epochs)
            scalars, arrays = split_state(cb)
            text = json.dumps(scalars, allow_nan=False)
            saved = {**json.loads(text), **arrays}
            fresh.on_train_begin(model)
            fresh.load_state(model, saved)
            again = fresh.state()
            _expect(
                _same_state(saved, again),
                f"state() after {epochs} epochs changed in the round trip: {saved} -> {again}",
            )
        return f"{len(scalars)} JSON values and {len(arrays)} arrays round trip via load_state"

    return [("interface", interface), ("state", state)]


# -- recipes --------------------------------------------------------------------------------
def _recipe_checks(
    make: Callable[[], Any], registry: Registry, input_shape: Any = None, **_: Any
) -> list[tuple[str, Thunk]]:
    from deepnet.recipes import train_recipe, validate_recipe  # imports the model: on use

    shape = tuple(input_shape or RECIPE_INPUT_SHAPE)
    where = f"raw pixels (N, {', '.join(map(str, shape))})"
    pixels = np.random.default_rng(0).integers(0, 256, (RECIPE_SAMPLES, *shape), dtype=np.uint8)

    def components() -> str:
        recipe = make()
        validate_recipe(registry, recipe, "float32")
        return "its layers, loss, regularizers, optimizer, schedule and initializer all resolve"

    def shapes() -> str:
        recipe = make()
        units = int(recipe.layers[-1].partition(":")[0])
        for dt in DTYPES:
            with _during(str(dt)):
                model = recipe.model(dt.name, raw_pixels=True).build(shape, seed=0)
                model.adapt(pixels)  # as fit does: standardize's statistics
                _expect(
                    model.output_shape == (units,),
                    f"output shape {model.output_shape}, but its last layer has {units} units",
                )
                for training in (False, True):
                    a = model.forward(pixels[:BATCH], training)[0]
                    _expect_array(f"outputs (training={training})", a, (BATCH, units), dt)
                    _expect_finite(f"outputs (training={training})", a)
        return f"{where} -> (N, {units}) in float32 and float64, training and not"

    def training() -> str:
        # One epoch on a few images, twice: it runs, stays finite, and its seed fixes it.
        recipe = make()(epochs=1, dev_fraction=0.0)
        labels = np.arange(RECIPE_SAMPLES) % int(recipe.layers[-1].partition(":")[0])
        runs = [train_recipe(recipe, pixels, labels)[0] for _ in range(2)]
        loss = runs[0].meta["history"]["epochs"][0]["loss"]
        _expect(math.isfinite(loss), f"loss {loss} after one epoch")
        same = all(
            np.array_equal(a[k], b[k])
            for a, b in zip(*(m.get_weights() for m in runs), strict=True)
            for k in a
        )
        _expect(same, "two trainings with the same seed gave different weights")
        return f"one epoch on {RECIPE_SAMPLES} images of {where}: loss {loss:.4g}; seeded"

    return [("components", components), ("shapes", shapes), ("training", training)]


_KIND_CHECKS: dict[str, Callable[..., list[tuple[str, Thunk]]]] = {
    "activation": _activation_checks,
    "loss": _loss_checks,
    "layer": _layer_checks,
    "regularizer": _regularizer_checks,
    "optimizer": _optimizer_checks,
    "initializer": _initializer_checks,
    "schedule": _schedule_checks,
    "callback": _callback_checks,
    "recipe": _recipe_checks,
}


# -- public API -----------------------------------------------------------------------------
def check_entry(
    entry: Entry,
    registry: Registry | None = None,
    *,
    config: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> list[CheckResult]:
    """Every check of the kind of ``entry`` (a registered component), run on its factory.

    ``config`` overrides hyperparameters; ``input_shape`` (layers and recipes, without the
    batch) replaces the shapes tried. The checks run with ``registry`` as the process registry.
    """
    registry = registry or _plugins.get_registry()
    with using_registry(registry):
        kwargs: dict[str, Any] = {}

        def make() -> Any:
            return entry.factory(**kwargs)

        def create() -> str:
            kwargs.update(_create_kwargs(entry, config))
            obj = make()
            kind = getattr(obj, "kind", None)
            _expect(kind == entry.kind, f"made a {kind or type(obj).__name__}, not a {entry.kind}")
            return repr(obj)

        created = _run("create", create)
        if not created.passed:
            return [created]
        given = input_shape if input_shape is not None else _hints(entry).get("input_shape")
        try:
            checks = _KIND_CHECKS[entry.kind](make, registry=registry, input_shape=given)
        except Exception as exc:  # e.g. a loss whose fused_activation property raises
            return [created, CheckResult("setup", False, _one_line(f"{type(exc).__name__}: {exc}"))]
        if entry.kind != "recipe":  # a recipe is data already; models do not save it
            checks.append(("config", lambda: _config_round_trip(make, registry, entry.kind)))
        return [created, *(_run(name, fn) for name, fn in checks)]


def check_component(
    kind: str,
    name: str,
    registry: Registry | None = None,
    *,
    config: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> list[CheckResult]:
    """The conformance checks of the ``kind`` component ``name`` (or ``provider/name``).

    ``registry`` defaults to the process registry. An unknown or ambiguous name gives a single
    FAIL ``lookup`` result.
    """
    registry = registry or _plugins.get_registry()
    try:
        entry = registry.lookup(kind, name)
    except DeepnetError as exc:
        return [CheckResult("lookup", False, _one_line(exc))]
    return check_entry(entry, registry, config=config, input_shape=input_shape)


def check_all(registry: Registry | None = None) -> list[tuple[Entry, list[CheckResult]]]:
    """Every registered entry (each provider of a colliding name too) with its results."""
    registry = registry or _plugins.get_registry()
    return [(entry, check_entry(entry, registry)) for entry in registry.entries()]


def entry_name(entry: Entry, registry: Registry) -> str:
    """The name to look ``entry`` up by: bare when unique, else ``provider/name``."""
    among = [e for e in registry.entries(entry.kind) if e.name == entry.name]
    return entry.name if len(among) == 1 else registry.qualified_name(entry, among)


def _failure_lines(results: list[CheckResult]) -> list[str]:
    return [f"  {r}" for r in results if not r.passed]


def assert_conforms(
    kind: str, name: str, registry: Registry | None = None, **options: Any
) -> list[CheckResult]:
    """Raise AssertionError listing the failed checks of ``name``; return the results.

    ``options`` (``config``, ``input_shape``) go to :func:`check_component`.
    """
    results = check_component(kind, name, registry, **options)
    failed = _failure_lines(results)
    if failed:
        raise AssertionError(
            f"{kind} {name!r} fails {len(failed)} of {len(results)} conformance checks:\n"
            + "\n".join(failed)
        )
    return results


def assert_all_conform(registry: Registry | None = None) -> None:
    """Raise AssertionError listing every failed check and every plugin that failed to load."""
    registry = registry or _plugins.get_registry()
    lines = [
        f"plugin {p.name}: {p.status}: {_one_line(p.error)}"
        for p in registry.plugins
        if p.status == "failed"
    ]
    for entry, results in check_all(registry):
        label = f"{entry.kind} {entry_name(entry, registry)}"
        lines += [f"{label}: {r}" for r in results if not r.passed]
    if lines:
        raise AssertionError(f"{len(lines)} conformance failures:\n" + "\n".join(lines))


def registry_with(*plugins: Any, **options: Any) -> Registry:
    """A fresh registry: the installed plugins plus in-process ``plugins`` (modules or objects
    with hook implementations). ``options`` (``strict``, ``disabled``, ``use_entry_points``)
    go to :func:`deepnet.core.plugins.load_plugins`."""
    return _plugins.load_plugins(extra=plugins, **options)


@contextlib.contextmanager
def using_registry(registry: Registry | None) -> Iterator[Registry | None]:
    """Make ``registry`` the process registry inside the block (components such as dense
    resolve their initializers through it), then restore the previous one."""
    # Read the module global rather than get_registry(): that would load one if none is set.
    saved = _plugins._registry
    _plugins.set_registry(registry)
    try:
        yield registry
    finally:
        _plugins.set_registry(saved)


_HOOKS = {kind: hook for hook, kind in _plugins.HOOK_KINDS.items()}


def make_plugin(name: str, **components: dict[str, Any]) -> types.ModuleType:
    """An in-process plugin module registering ``{name: factory}`` per kind, for tests::

    registry_with(make_plugin("mine", activation={"my_act": MyAct}))
    """
    module = types.ModuleType(name)
    for kind, factories in components.items():
        if kind not in _HOOKS:
            raise DeepnetError(f"unknown component kind {kind!r}; kinds: {', '.join(_HOOKS)}")
        setattr(module, _HOOKS[kind], _register_all(dict(factories)))
    return module


def _register_all(factories: dict[str, Any]) -> Callable[[Any], None]:
    @hookimpl
    def register_all(register: Any) -> None:
        for component_name, factory in factories.items():
            register(factory, name=component_name)

    return register_all


__all__ = [
    "CheckResult",
    "assert_all_conform",
    "assert_conforms",
    "check_all",
    "check_component",
    "check_entry",
    "entry_name",
    "make_plugin",
    "registry_with",
    "using_registry",
]

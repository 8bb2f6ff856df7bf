"""Contributed layers: dropout, batch normalization, random shifts, and a small CNN kit
(reshape, conv2d, max_pool2d) on images laid out (N, C, H, W).

Stochastic layers keep their ``np.random.Generator`` in ``self.rng`` (set in ``build`` from the
model's per-layer stream), so a seed fixes every draw and the gradient checker can replay them.
"""

from __future__ import annotations

from math import ceil, prod
from typing import Any, ClassVar

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from deepnet.core.components import Array, Layer
from deepnet.core.errors import DeepnetError, ShapeError
from deepnet.core.hookspecs import hookimpl
from deepnet.core.plugins import create
from deepnet.core.validators import positive, positive_int, unit_interval


@attrs.define(eq=False)
class Dropout(Layer):
    """Inverted dropout: zeroes each unit with probability ``rate`` in training and scales the
    rest by 1/(1-rate), so evaluation is the identity. Any shape (N, ...), dtype kept."""

    rate: float = attrs.field(default=0.5, validator=unit_interval)
    # Not a hyperparameter: init=False keeps it out of the config the model saves.
    rng: np.random.Generator | None = attrs.field(init=False, default=None, repr=False)

    def build(self, input_shape, rng, dtype):
        self.rng = rng
        return tuple(input_shape)

    def forward(self, x: Array, training: bool = False) -> tuple[Array, Array | None]:
        if not training or self.rate == 0:
            return x, None
        # Drawn in x's dtype and scaled by a scalar of it: no float64 temporary for float32.
        keep = self.rng.random(x.shape, dtype=x.dtype) >= x.dtype.type(self.rate)
        mask = np.multiply(keep, x.dtype.type(1.0 / (1.0 - self.rate)), dtype=x.dtype)
        return x * mask, mask

    def backward(self, dz: Array, cache: Array | None, need_dx: bool = True):
        if not need_dx:
            return None, {}
        return (dz if cache is None else dz * cache), {}


def _channel_axes(ndim: int) -> tuple[int, ...]:
    # Features are axis 1 ((N, F) or (N, C, H, W)); statistics pool every other axis.
    return (0, *range(2, ndim))


@attrs.define(eq=False)
class BatchNorm(Layer):
    """Batch normalization: z = gamma·(x - mean)/sqrt(var + eps) + beta, per feature.

    Inputs (N, F), or (N, C, ...) normalized per channel over N and the spatial axes; gamma,
    beta, running_mean and running_var have shape (F,) or (C,). Training uses the batch's
    statistics and updates the running ones (``running = momentum·running + (1-momentum)·batch``,
    the unbiased variance); evaluation uses the running ones.
    """

    momentum: float = attrs.field(default=0.9, validator=unit_interval)
    eps: float = attrs.field(default=1e-5, validator=positive)
    activation: Any = None

    def build(self, input_shape, rng, dtype):
        if len(input_shape) < 1:
            raise ShapeError("batch_norm needs inputs of shape (N, features) or (N, C, ...)")
        c = int(input_shape[0])
        self.params.clear()
        self.params.update(gamma=np.ones(c, dtype), beta=np.zeros(c, dtype))
        self.state.clear()
        self.state.update(running_mean=np.zeros(c, dtype), running_var=np.ones(c, dtype))
        return tuple(input_shape)

    def forward(self, x: Array, training: bool = False) -> tuple[Array, tuple]:
        axes = _channel_axes(x.ndim)
        shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcasts (C,) against x
        if training:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            m = x.size // x.shape[1]
            self._update_running(mean, var * x.dtype.type(m / max(m - 1, 1)))
        else:
            mean, var = self.state["running_mean"], self.state["running_var"]
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        z = x_hat * self.params["gamma"].reshape(shape) + self.params["beta"].reshape(shape)
        return z, (x_hat, inv_std.reshape(shape), training)

    def _update_running(self, mean: Array, var: Array) -> None:
        # In place, so the arrays the model saves and snapshots stay the same objects.
        mu = self.momentum
        for name, batch in (("running_mean", mean), ("running_var", var)):
            running = self.state[name]
            running *= running.dtype.type(mu)
            running += running.dtype.type(1.0 - mu) * batch

    def backward(self, dz: Array, cache: tuple, need_dx: bool = True):
        x_hat, inv_std, training = cache
        axes = _channel_axes(dz.ndim)
        grads = {"gamma": (dz * x_hat).sum(axis=axes), "beta": dz.sum(axis=axes)}
        if not need_dx:
            return None, grads
        gamma = self.params["gamma"].reshape(inv_std.shape)
        if not training:  # running statistics are constants: a per-channel affine map
            return dz * (gamma * inv_std), grads
        # dx = gamma/sigma · (dz - mean(dz) - x_hat·mean(dz·x_hat)), means over the pooled axes.
        m = dz.dtype.type(dz.size // dz.shape[1])
        shape = inv_std.shape
        dx = dz - (grads["beta"] / m).reshape(shape) - x_hat * (grads["gamma"] / m).reshape(shape)
        return dx * (gamma * inv_std), grads


def _shape_tuple(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in value)


@attrs.define(eq=False)
class Reshape(Layer):
    """Reshapes (N, *input_shape) to (N, *target_shape), e.g. MNIST rows (N, 784) to images
    (N, 1, 28, 28); the sizes must match."""

    target_shape: tuple[int, ...] = attrs.field(converter=_shape_tuple)

    # target_shape has no default to guess: the conformance kit tries this example.
    conformance: ClassVar[dict[str, Any]] = {
        "config": {"target_shape": (2, 3)},
        "input_shape": (6,),
    }

    def build(self, input_shape, rng, dtype):
        if prod(input_shape) != prod(self.target_shape):
            raise ShapeError(
                f"reshape: cannot make {prod(input_shape)} values per sample "
                f"(input {tuple(input_shape)}) into {self.target_shape}"
            )
        return self.target_shape

    def forward(self, x: Array, training: bool = False) -> tuple[Array, tuple]:
        return x.reshape(x.shape[0], *self.target_shape), x.shape

    def backward(self, dz: Array, cache: tuple, need_dx: bool = True):
        return (dz.reshape(cache) if need_dx else None), {}


def _image_shape(layer: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ShapeError(
            f"{layer} expects images of shape (N, C, H, W), got (N, "
            f"{', '.join(map(str, input_shape))}); add a 'reshape' layer before it, e.g. "
            "{'name': 'reshape', 'target_shape': [1, 28, 28]}"
        )
    c, h, w = (int(d) for d in input_shape)
    return c, h, w


@attrs.define(eq=False)
class RandomShift(Layer):
    """Data augmentation: in training, shifts each image by a random whole number of pixels in
    [-max_shift, max_shift] along H and W, filling with zeros; the identity in evaluation.
    Inputs (N, C, H, W) or (N, H, W)."""

    max_shift: int = attrs.field(default=2, validator=positive_int)
    rng: np.random.Generator | None = attrs.field(init=False, default=None, repr=False)

    def build(self, input_shape, rng, dtype):
        if len(input_shape) < 2:
            raise ShapeError(
                f"random_shift expects images (N, [C,] H, W), got (N, "
                f"{', '.join(map(str, input_shape))}); add a 'reshape' layer before it"
            )
        self.rng = rng
        return tuple(input_shape)

    def _windows(self, padded: Array, writeable: bool = False) -> Array:
        # (N, ..., 2s+1, 2s+1, H, W): every shifted crop of every padded image, as a view.
        h, w = padded.shape[-2] - 2 * self.max_shift, padded.shape[-1] - 2 * self.max_shift
        return sliding_window_view(padded, (h, w), axis=(-2, -1), writeable=writeable)

    def forward(self, x: Array, training: bool = False) -> tuple[Array, Any]:
        if not training:
            return x, None
        s, n = self.max_shift, x.shape[0]
        offsets = self.rng.integers(0, 2 * s + 1, size=(2, n))
        pad = [(0, 0)] * (x.ndim - 2) + [(s, s), (s, s)]
        # The crop at (dy, dx) of the padded image moves its content by (s - dy, s - dx).
        z = self._windows(np.pad(x, pad))[np.arange(n), ..., offsets[0], offsets[1], :, :]
        return z, (offsets, pad, x.shape)

    def backward(self, dz: Array, cache: Any, need_dx: bool = True):
        if not need_dx:
            return None, {}
        if cache is None:
            return dz, {}
        offsets, pad, shape = cache
        s = self.max_shift
        padded = np.zeros([d + lo + hi for d, (lo, hi) in zip(shape, pad, strict=True)], dz.dtype)
        # Each image's crop window lies in its own padded image: the writes never overlap.
        windows = self._windows(padded, writeable=True)
        windows[np.arange(shape[0]), ..., offsets[0], offsets[1], :, :] = dz
        return padded[..., s:-s, s:-s], {}


def _pair(value: Any) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v >= 1 for v in pair):
        raise DeepnetError(f"expected a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TensorFlow's "same": output ceil(size / stride), the odd pixel of padding at the end.
    total = max((ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@attrs.define(eq=False)
class Conv2D(Layer):
    """2-D convolution (cross-correlation) of (N, C, H, W) images with ``filters`` kernels.

    One matmul over im2col patches: W has shape (kh·kw·C, filters), a column per filter over
    patches ordered (kh, kw, C), so regularizers that treat W as (fan_in, units), max-norm
    among them, act per filter; b is (filters,). ``padding``: "valid" (none) or "same" (output
    ceil(H/stride) x ceil(W/stride)). Output (N, filters, Ho, Wo).
    """

    filters: int = attrs.field(validator=positive_int)
    kernel_size: Any = attrs.field(default=3, converter=_pair)
    stride: Any = attrs.field(default=1, converter=_pair)
    padding: str = attrs.field(default="valid", validator=attrs.validators.in_(("valid", "same")))
    activation: Any = None
    init: Any = "glorot_uniform"
    bias_init: Any = "zeros"
    _pads: tuple = attrs.field(init=False, default=((0, 0), (0, 0)), repr=False)

    regularized = ("W",)

    def build(self, input_shape, rng, dtype):
        c, h, w = _image_shape("conv2d", input_shape)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if self.padding == "same":
            self._pads = (_same_padding(h, kh, sh), _same_padding(w, kw, sw))
        else:
            self._pads = ((0, 0), (0, 0))
        hp, wp = h + sum(self._pads[0]), w + sum(self._pads[1])
        if hp < kh or wp < kw:
            raise ShapeError(f"conv2d: kernel {kh}x{kw} is larger than the {h}x{w} input")
        fan_in, fan_out = kh * kw * c, kh * kw * self.filters
        wts = create("initializer", self.init)((fan_in, self.filters), rng, fan_in, fan_out)
        b = create("initializer", self.bias_init)((self.filters,), rng, fan_in, fan_out)
        self.params.clear()
        self.params.update(W=np.ascontiguousarray(wts, dtype=dtype), b=b.astype(dtype))
        return (self.filters, (hp - kh) // sh + 1, (wp - kw) // sw + 1)

    def forward(self, x: Array, training: bool = False) -> tuple[Array, tuple]:
        # Channels-last inside: the im2col copy reads runs of C contiguous values, and the
        # output (a channels-first view of channels-last memory) flows on without a copy.
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        xp = x.transpose(0, 2, 3, 1)
        if any(map(any, self._pads)):  # "valid" needs no padded copy
            xp = np.pad(xp, ((0, 0), *self._pads, (0, 0)))
        patches = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        n, ho, wo, c = patches.shape[:4]
        cols = patches.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * c)
        out = cols @ self.params["W"]
        # In place: a second output-sized array (72 KB per image after a 5x5x32 first layer
        # on MNIST) cost two thirds as much as the first layer's product itself.
        out += self.params["b"]
        return out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2), (cols, xp.shape)

    def backward(self, dz: Array, cache: tuple, need_dx: bool = True):
        cols, padded_shape = cache
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        n, f, ho, wo = dz.shape
        dz2 = dz.transpose(0, 2, 3, 1).reshape(n * ho * wo, f)
        grads = {"W": cols.T @ dz2, "b": dz2.sum(axis=0)}
        if not need_dx:
            return None, grads
        dcols = (dz2 @ self.params["W"].T).reshape(n, ho, wo, kh, kw, -1)
        # col2im: each kernel offset adds its share of the patch gradients back into place.
        dxp = np.zeros(padded_shape, dz.dtype)
        for i in range(kh):
            for j in range(kw):
                dxp[:, i : i + sh * ho : sh, j : j + sw * wo : sw] += dcols[:, :, :, i, j]
        (top, bottom), (left, right) = self._pads
        dx = dxp[:, top : padded_shape[1] - bottom, left : padded_shape[2] - right]
        return dx.transpose(0, 3, 1, 2), grads


@attrs.define(eq=False)
class MaxPool2D(Layer):
    """Max pooling over non-overlapping p x p windows (p = pool_size, also the stride) of
    (N, C, H, W) images; rows and columns that fill no window are dropped. Output
    (N, C, H // p, W // p). Each window's gradient goes to its first maximum only."""

    pool_size: int = attrs.field(default=2, validator=positive_int)

    def build(self, input_shape, rng, dtype):
        c, h, w = _image_shape("max_pool2d", input_shape)
        p = self.pool_size
        if h < p or w < p:
            raise ShapeError(f"max_pool2d: pool {p}x{p} is larger than the {h}x{w} input")
        return (c, h // p, w // p)

    def _offsets(self, shape: tuple[int, ...]) -> list[tuple[slice, slice]]:
        # The p·p strided slices (over H, W) that each hold one position of every window.
        p = self.pool_size
        ho, wo = shape[2] // p, shape[3] // p
        return [
            (slice(i, i + p * ho, p), slice(j, j + p * wo, p)) for i in range(p) for j in range(p)
        ]

    def forward(self, x: Array, training: bool = False) -> tuple[Array, tuple]:
        # A running max over strided slices, channels-last like conv2d's output: elementwise
        # passes over contiguous runs of C, far faster than reducing a tiny trailing axis.
        # Strict > keeps the first maximum as the winner.
        offsets = self._offsets(x.shape)
        xh = x.transpose(0, 2, 3, 1)
        z = xh[:, offsets[0][0], offsets[0][1]].copy()
        winner = np.zeros(z.shape, np.min_scalar_type(len(offsets) - 1))
        better = np.empty(z.shape, bool)
        for k, (rows, cols) in enumerate(offsets[1:], start=1):
            candidate = xh[:, rows, cols]
            np.greater(candidate, z, out=better)
            # winner = where(better, k, winner), in integer arithmetic: masked copies are
            # an order of magnitude slower.
            winner *= ~better
            winner += better * winner.dtype.type(k)
            np.maximum(z, candidate, out=z)
        return z.transpose(0, 3, 1, 2), (winner, x.shape)

    def backward(self, dz: Array, cache: tuple, need_dx: bool = True):
        if not need_dx:
            return None, {}
        winner, (n, c, h, w) = cache
        dzh = dz.transpose(0, 2, 3, 1)
        p = self.pool_size
        covered = h % p == 0 and w % p == 0  # then every entry of dx is written below
        dx = (np.empty if covered else np.zeros)((n, h, w, c), dz.dtype)
        for k, (rows, cols) in enumerate(self._offsets((n, c, h, w))):
            np.multiply(dzh, winner == k, out=dx[:, rows, cols])
        return dx.transpose(0, 3, 1, 2), {}


@hookimpl
def deepnet_register_layers(register):
    register(Dropout, name="dropout")
    register(BatchNorm, name="batch_norm")
    register(RandomShift, name="random_shift")
    register(Reshape, name="reshape")
    register(Conv2D, name="conv2d")
    register(MaxPool2D, name="max_pool2d")


# The CNN recipes are registered by this plugin, not one of their own: they are built from these
# layers (disabling contrib.layers takes them away too), and no new entry point is needed.
@hookimpl
def deepnet_register_recipes(register):
    from deepnet_plugins_contrib.recipes import POSTAL, POSTAL_DEEP, POSTAL_WIDE, REGULARIZED

    for recipe in (REGULARIZED, POSTAL, POSTAL_DEEP, POSTAL_WIDE):
        register(recipe)

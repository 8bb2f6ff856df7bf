"""deepnet against a plain-numpy loop, PyTorch and scikit-learn on small dense nets (MNIST, CPU).

Every implementation trains the same network from the same initial weights, in float32, on the
same batches in the same order, with the same number of BLAS threads. The implementations take
turns epoch by epoch (deepnet's ``fit`` runs the others from an epoch-end callback), so a slow
phase of a shared machine hits them all; the table reports median seconds per epoch and the
median of the per-round ratios to deepnet. "matmul" is the bound: one epoch of only the
network's matrix products (forward and backward) at the same shapes, timed in every round.

    python benchmarks/run.py                      # every config, ~3 minutes on 2 cores
    python benchmarks/run.py --configs A,modern --rounds 3 --limit 10000

PyTorch (``pip install torch==2.13.0``, the CPU wheel) and scikit-learn (``pip install
'deepnet[bench]'``) are optional: without them their rows are left out. Peak memory is measured
in a fresh process per implementation training one epoch of the modern config on full MNIST.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass


def _set_blas_threads(argv: list[str]) -> None:
    """BLAS reads its thread count when numpy is imported: set it from --threads before."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--threads=")]
    given += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--threads"]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if given:
            os.environ[var] = given[-1]
        else:
            os.environ.setdefault(var, "2")


if __name__ == "__main__":
    _set_blas_threads(sys.argv[1:])

import numpy as np  # noqa: E402  (after the thread count is set)


@dataclass(frozen=True)
class Config:
    name: str
    hidden: tuple[int, ...]
    activations: tuple[str, ...]  # hidden layers, then the output's
    optimizer: str  # "sgd", "adam" or "nesterov" (momentum 0.9)
    lr: float
    batch: int
    normalize: str  # "standardize" (per-pixel) or "scale" (/255)
    init: str  # "lecun_normal" (randn·√(1/n_in)) or "he_normal" (randn·√(2/n_in))
    rounds: int = 5

    @property
    def sizes(self) -> list[int]:
        return [784, *self.hidden, 10]

    @property
    def label(self) -> str:
        return (
            f"{'-'.join(map(str, self.sizes))} {'/'.join(self.activations)}, "
            f"{self.optimizer} lr {self.lr:g}, batch {self.batch}"
        )


CONFIGS = {
    c.name: c
    for c in [
        Config("A", (50, 25), ("tanh", "sigmoid", "sigmoid"), "sgd", 0.1, 64, "standardize",
               "lecun_normal"),
        Config("B", (50, 25), ("relu", "relu", "sigmoid"), "sgd", 0.01, 64, "standardize",
               "lecun_normal"),
        Config("modern", (256, 128), ("relu", "relu", "softmax"), "adam", 0.001, 128, "scale",
               "he_normal"),
        Config("wide", (1024, 1024), ("relu", "relu", "softmax"), "nesterov", 0.05, 128,
               "scale", "he_normal", rounds=3),
    ]
}  # fmt: skip


def initial_weights(cfg: Config, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W (n_in, n_out), b)`` per layer, float32, shared by every implementation."""
    rng = np.random.default_rng(seed)
    gain = 1.0 if cfg.init == "lecun_normal" else 2.0
    sizes = cfg.sizes
    return [
        ((rng.standard_normal((n_in, n_out)) * np.sqrt(gain / n_in)).astype(np.float32),
         np.zeros(n_out, np.float32))
        for n_in, n_out in itertools.pairwise(sizes)
    ]  # fmt: skip


def epoch_orders(seed: int, n: int, epochs: int) -> list[np.ndarray]:
    """The sample order of each epoch of ``Model.fit(..., seed=seed, shuffle=True)``.

    fit draws its permutations from the third child of its seed's SeedSequence.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    return [rng.permutation(n) for _ in range(epochs)]


def normalized(
    x: np.ndarray,
    cfg: Config,
    x_train: np.ndarray | None = None,
    mean_std: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """float32 inputs as the other implementations get them (deepnet normalizes inside);
    standardized with ``mean_std`` if given, else with the statistics of ``x_train``."""
    from deepnet.core.data import normalize_pixels, pixel_stats

    stats = None
    if cfg.normalize == "standardize":
        stats = mean_std if mean_std is not None else pixel_stats(x_train)
    return normalize_pixels(x, cfg.normalize, stats, "float32")


# -- the implementations: each trains one epoch on a given order and predicts ----------------


class Deepnet:
    """deepnet's Model, fed the raw uint8 pixels; its normalize layer does the rest."""

    name = "deepnet"

    def __init__(self, cfg: Config, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        from deepnet import Dense, Model

        layers = [{"name": "normalize", "method": cfg.normalize}]
        layers += [Dense(n, a) for n, a in zip(cfg.sizes[1:], cfg.activations, strict=True)]
        loss = "binary_cross_entropy" if cfg.activations[-1] == "sigmoid" else None
        self.model = Model(layers, loss=loss or "categorical_cross_entropy")
        self.model.build((784,))
        self.model.adapt(x)
        for layer, (w, b) in zip(self.model.layers[1:], initial_weights(cfg), strict=True):
            layer.params["W"][...] = w
            layer.params["b"][...] = b
        opt = {"sgd": {"name": "sgd"}, "adam": {"name": "adam"},
               "nesterov": {"name": "sgd", "momentum": 0.9, "nesterov": True}}  # fmt: skip
        self.fit_args = {"batch_size": cfg.batch, "optimizer": opt[cfg.optimizer], "lr": cfg.lr}
        self.seed = seed
        self.x, self.y = x, y

    def train(self, epochs: int, on_epoch_end: Callable[[int, float], None]) -> None:
        """Train ``epochs`` epochs in one fit (optimizer state carries over), calling
        ``on_epoch_end(epoch, seconds)`` after each."""
        from deepnet import Callback

        class Turns(Callback):
            def on_epoch_end(self, model, epoch, logs):
                on_epoch_end(epoch, logs["seconds"])
                return False

        self.model.fit(
            self.x, self.y, epochs=epochs, seed=self.seed, callbacks=[Turns()], **self.fit_args
        )

    def predict(self, x_raw: np.ndarray) -> np.ndarray:
        return self.model.predict(x_raw)


def _act(name: str, z: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 0.5 + 0.5 * np.tanh(0.5 * z)
    if name == "relu":
        return np.maximum(z, 0)
    e = np.exp(z - z.max(axis=1, keepdims=True))  # softmax
    return e / e.sum(axis=1, keepdims=True)


def _act_grad(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1 - a * a
    if name == "sigmoid":
        return a * (1 - a)
    return z > 0  # relu


class NumpyReference:
    """The notebook's algorithm written directly (row-major, float32, fused output gradient)."""

    name = "numpy"

    def __init__(self, cfg: Config, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.cfg = cfg
        self.x = x  # float32, normalized
        self.y = np.eye(10, dtype=np.float32)[y]
        self.params = [p for wb in initial_weights(cfg) for p in wb]
        self.m = [np.zeros_like(p) for p in self.params]  # momentum / Adam first moment
        self.v = [np.zeros_like(p) for p in self.params]  # Adam second moment
        self.t = 0

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        zs, acts = [], [x]
        for i, name in enumerate(self.cfg.activations):
            z = acts[-1] @ self.params[2 * i] + self.params[2 * i + 1]
            zs.append(z)
            acts.append(_act(name, z))
        return zs, acts

    def step(self, grads: list[np.ndarray]) -> None:
        cfg, lr = self.cfg, self.cfg.lr
        if cfg.optimizer == "adam":
            self.t += 1
            b1, b2 = 0.9, 0.999
            for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
                m[...] = b1 * m + (1 - b1) * g
                v[...] = b2 * v + (1 - b2) * g * g
                p -= lr * (m / (1 - b1**self.t)) / (np.sqrt(v / (1 - b2**self.t)) + 1e-8)
        elif cfg.optimizer == "nesterov":
            for p, g, m in zip(self.params, grads, self.m, strict=True):
                m[...] = 0.9 * m + g
                p -= lr * (g + 0.9 * m)
        else:
            for p, g in zip(self.params, grads, strict=True):
                p -= lr * g

    def epoch(self, order: np.ndarray) -> None:
        n_layers = len(self.cfg.activations)
        for start in range(0, len(order), self.cfg.batch):
            idx = order[start : start + self.cfg.batch]
            xb, yb = self.x[idx], self.y[idx]
            zs, acts = self.forward(xb)
            dz = (acts[-1] - yb) / np.float32(len(idx))  # sigmoid+BCE and softmax+CE alike
            grads: list[np.ndarray] = [None] * (2 * n_layers)  # type: ignore[list-item]
            for i in range(n_layers - 1, -1, -1):
                grads[2 * i], grads[2 * i + 1] = acts[i].T @ dz, dz.sum(axis=0)
                if i:
                    da = dz @ self.params[2 * i].T
                    dz = da * _act_grad(self.cfg.activations[i - 1], zs[i - 1], acts[i])
            self.step(grads)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[1][-1].argmax(axis=1)


class Torch:
    """PyTorch CPU: nn.Sequential, the same loss and optimizer, batches gathered by index."""

    name = "torch"

    def __init__(self, cfg: Config, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        import torch

        self.torch, self.cfg = torch, cfg
        acts = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}
        modules: list = []
        for i, (w, b) in enumerate(initial_weights(cfg)):
            linear = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T.copy()))
                linear.bias.copy_(torch.from_numpy(b))
            modules.append(linear)
            if i + 1 < len(cfg.activations):  # the output activation is inside the loss
                modules.append(acts[cfg.activations[i]]())
        self.net = torch.nn.Sequential(*modules)
        self.sigmoid_out = cfg.activations[-1] == "sigmoid"
        params = self.net.parameters()
        if cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=cfg.lr)
        else:
            nesterov = cfg.optimizer == "nesterov"
            self.opt = torch.optim.SGD(
                params, lr=cfg.lr, momentum=0.9 if nesterov else 0.0, nesterov=nesterov
            )
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y.astype(np.int64))
        self.y_hot = torch.from_numpy(np.eye(10, dtype=np.float32)[y])

    def loss(self, out, idx):
        f = self.torch.nn.functional
        if self.sigmoid_out:  # deepnet's mean: summed over outputs, averaged over the batch
            return f.binary_cross_entropy_with_logits(out, self.y_hot[idx], reduction="sum") / len(
                idx
            )
        return f.cross_entropy(out, self.y[idx])

    def epoch(self, order: np.ndarray) -> None:
        order_t = self.torch.from_numpy(order)
        for start in range(0, len(order), self.cfg.batch):
            idx = order_t[start : start + self.cfg.batch]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.net(self.x[idx]), idx)
            loss.backward()
            self.opt.step()
            loss.item()  # deepnet reports the running loss: read it too

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(x)).argmax(dim=1).numpy()

    def predict_raw(self, x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Classes of raw uint8 pixels, standardized with tensor operations."""
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(torch.float32)
            t -= torch.from_numpy(mean)
            t /= torch.from_numpy(std)
            return self.net(t).argmax(dim=1).numpy()


class Sklearn:
    """scikit-learn's MLPClassifier, one partial_fit per epoch on the permuted data.

    Its hidden layers share one activation and its output is softmax, so A runs tanh/tanh and B
    relu/relu, both with softmax outputs; the arithmetic is the same.
    """

    name = "sklearn"

    def __init__(self, cfg: Config, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        from sklearn.neural_network import MLPClassifier

        sgd = cfg.optimizer != "adam"
        self.clf = MLPClassifier(
            hidden_layer_sizes=cfg.hidden,
            activation={"sigmoid": "logistic"}.get(cfg.activations[0], cfg.activations[0]),
            solver="sgd" if sgd else "adam",
            alpha=0.0,
            batch_size=cfg.batch,
            learning_rate_init=cfg.lr,
            momentum=0.9 if cfg.optimizer == "nesterov" else 0.0,
            nesterovs_momentum=cfg.optimizer == "nesterov",
            shuffle=False,
            random_state=seed,
        )
        self.x, self.y = x, y
        # Initialize, then put in the shared weights and start the optimizer afresh.
        with warnings.catch_warnings():  # "batch_size larger than sample size": intended
            warnings.simplefilter("ignore", UserWarning)
            self.clf.partial_fit(x[:1], y[:1], classes=np.arange(10))
        init = initial_weights(cfg)
        self.clf.coefs_ = [w.copy() for w, _ in init]
        self.clf.intercepts_ = [b.copy() for _, b in init]
        del self.clf._optimizer  # partial_fit makes a new one when it is missing

    def epoch(self, order: np.ndarray) -> None:
        self.clf.partial_fit(self.x[order], self.y[order])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict(x)


class MatmulBound:
    """Only the matrix products of one epoch (forward, dW and dx), at the network's shapes."""

    name = "matmul"

    def __init__(self, cfg: Config, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.cfg, self.n = cfg, len(x)
        rng = np.random.default_rng(0)
        sizes = cfg.sizes
        self.w = [rng.standard_normal((a, b), np.float32) for a, b in itertools.pairwise(sizes)]
        self.a = [rng.standard_normal((cfg.batch, s), np.float32) for s in sizes]

    def epoch(self, order: np.ndarray) -> None:
        n_batches = -(-self.n // self.cfg.batch)
        for _ in range(n_batches):
            for i, w in enumerate(self.w):
                np.matmul(self.a[i], w, out=self.a[i + 1])
                self.a[i].T @ self.a[i + 1]  # dW
                if i:
                    np.matmul(self.a[i + 1], w.T, out=self.a[i])  # dx

    def flops(self) -> float:
        """Per epoch: 2·n_in·n_out per sample per product, three products (two for layer 1)."""
        sizes = self.cfg.sizes
        per_sample = sum(
            2 * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(itertools.pairwise(sizes))
        )
        return per_sample * self.n


IMPLEMENTATIONS = {c.name: c for c in (Deepnet, NumpyReference, Torch, Sklearn, MatmulBound)}
OPTIONAL = {"torch": "torch", "sklearn": "sklearn"}


def available(names: list[str]) -> list[str]:
    out = []
    for name in names:
        module = OPTIONAL.get(name)
        if module:
            try:
                __import__(module)
            except ImportError:
                print(f"({name}: not installed, skipped)")
                continue
        out.append(name)
    return out


# -- running ----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: list[float]
    accuracy: float = float("nan")


def run_config(cfg: Config, data, names: list[str], rounds: int, seed: int = 0) -> list[Result]:
    """Train every implementation ``rounds`` epochs, taking turns after each deepnet epoch."""
    x_float = normalized(data.x_train, cfg, data.x_train)
    orders = epoch_orders(seed, len(data.x_train), rounds)
    others = {}
    for name in names:
        if name != "deepnet":
            others[name] = IMPLEMENTATIONS[name](cfg, x_float, data.y_train, seed)
    ours = Deepnet(cfg, data.x_train, data.y_train, seed)
    results = {name: Result(name, []) for name in ["deepnet", *others]}

    def turn(epoch: int, seconds: float) -> None:
        results["deepnet"].seconds.append(seconds)
        names_now = list(others)
        names_now = names_now[epoch % len(names_now) :] + names_now[: epoch % len(names_now)]
        for name in names_now:  # rotate, so no one always runs right after deepnet
            start = time.perf_counter()
            others[name].epoch(orders[epoch])
            results[name].seconds.append(time.perf_counter() - start)

    ours.train(rounds, turn)
    x_test = normalized(data.x_test, cfg, data.x_train)
    results["deepnet"].accuracy = float((ours.predict(data.x_test) == data.y_test).mean())
    for name, impl in others.items():
        if name != "matmul":
            results[name].accuracy = float((impl.predict(x_test) == data.y_test).mean())
    return list(results.values())


def inference(data, names: list[str], repeats: int = 7) -> dict[str, float]:
    """Images per second of predict on the test set, 784-50-25-10 net (config A), interleaved.

    Every implementation gets the raw uint8 pixels and standardizes them as it does its
    training data, inside the timing: deepnet in its model, numpy with ``normalized``, torch
    with tensor operations. The same work for all: pixels in, classes out.
    """
    from deepnet.core.data import pixel_stats

    cfg = CONFIGS["A"]
    mean, std = (s.astype(np.float32) for s in pixel_stats(data.x_train))
    x_small = normalized(data.x_train[:1000], cfg, data.x_train)
    impls = {"deepnet": Deepnet(cfg, data.x_train[:1000], data.y_train[:1000], 0)}
    for name in names:
        if name in ("numpy", "torch"):
            impls[name] = IMPLEMENTATIONS[name](cfg, x_small, data.y_train[:1000], 0)
    predict = {
        "deepnet": impls["deepnet"].predict,
        "numpy": lambda x: impls["numpy"].predict(normalized(x, cfg, mean_std=(mean, std))),
        "torch": lambda x: impls["torch"].predict_raw(x, mean, std),
    }
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name in impls:
            start = time.perf_counter()
            predict[name](data.x_test)
            times[name].append(time.perf_counter() - start)
    return {name: len(data.x_test) / statistics.median(t) for name, t in times.items()}


def peak_memory(name: str, limit: int | None) -> float | None:
    """Peak RSS (MB) of a fresh process training one modern epoch with ``name``."""
    cmd = [sys.executable, __file__, f"--memory-probe={name}"]
    if limit:
        cmd.append(f"--limit={limit}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ)
    if out.returncode:
        print(f"({name}: memory probe failed: {out.stderr.strip().splitlines()[-1:]})")
        return None
    return float(out.stdout.split()[-1])


def memory_probe(name: str, limit: int | None) -> None:
    data = load(limit)
    cfg = CONFIGS["modern"]
    if name == "deepnet":
        Deepnet(cfg, data.x_train, data.y_train, 0).train(1, lambda e, s: None)
    else:
        x = normalized(data.x_train, cfg, data.x_train)
        IMPLEMENTATIONS[name](cfg, x, data.y_train, 0).epoch(epoch_orders(0, len(x), 1)[0])
    # VmHWM, not getrusage: ru_maxrss carries the parent's peak over fork and exec.
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024)


def load(limit: int | None):
    import attrs

    from deepnet.datasets import load_mnist

    data = load_mnist(normalize="none", dtype="uint8")  # the raw pixels, 55 MB
    if limit:
        data = attrs.evolve(
            data, x_train=data.x_train[:limit], y_train=data.y_train[:limit],
            x_test=data.x_test[:limit], y_test=data.y_test[:limit],
        )  # fmt: skip
    return data


def table(cfg: Config, results: list[Result]) -> list[str]:
    ours = results[0].seconds
    lines = [f"{cfg.name}: {cfg.label}, {len(ours)} epochs"]
    lines.append(f"  {'':<8} {'s/epoch':>8} {'ratio':>6} {'test acc':>8}")
    for r in results:
        ratio = statistics.median(t / d for t, d in zip(r.seconds, ours, strict=False))
        acc = "" if np.isnan(r.accuracy) else f"{r.accuracy:.2%}"
        lines.append(f"  {r.name:<8} {statistics.median(r.seconds):8.3f} {ratio:6.2f} {acc:>8}")
    bound = next((r for r in results if r.name == "matmul"), None)
    if bound:
        share = statistics.median(m / d for m, d in zip(bound.seconds, ours, strict=False))
        lines.append(f"  deepnet reaches {share:.0%} of the matmul bound")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--impls", default="numpy,torch,sklearn,matmul", help="besides deepnet")
    parser.add_argument("--rounds", type=int, help="epochs per config [5, wide 3]")
    parser.add_argument("--limit", type=int, help="first N training and test images")
    parser.add_argument("--threads", default="2", help="BLAS (and torch) threads")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--no-inference", action="store_true", help="skip predict throughput")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        memory_probe(args.memory_probe, args.limit)
        return
    names = available([n for n in args.impls.split(",") if n])
    if "torch" in names:
        import torch

        torch.set_num_threads(int(args.threads))
    versions = {"numpy": np.__version__}
    for name, module in OPTIONAL.items():
        if name in names:
            versions[name] = __import__(module).__version__
    print(f"{os.cpu_count()} CPUs, BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)  # fmt: skip
    data = load(args.limit)
    for key in args.configs.split(","):
        cfg = CONFIGS[key]
        results = run_config(cfg, data, names, args.rounds or cfg.rounds)
        print("\n".join(table(cfg, results)), flush=True)
        if "matmul" in names:
            bound = MatmulBound(cfg, data.x_train, data.y_train, 0)
            seconds = next(r.seconds for r in results if r.name == "matmul")
            rate = bound.flops() / statistics.median(seconds) / 1e9
            print(f"  matmul: {bound.flops() / 1e9:.1f} GFLOP/epoch at {rate:.0f} GFLOP/s")
    if not args.no_inference:
        rates = inference(data, names)
        print("predict, 784-50-25-10 on the test set (images/s): "
              + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in rates.items()))  # fmt: skip
    if not args.no_memory:
        mem = {n: peak_memory(n, args.limit) for n in ["deepnet", *names] if n != "matmul"}
        print("peak RSS training modern for one epoch, fresh process (MB): "
              + ", ".join(f"{k} {v:.0f}" for k, v in mem.items() if v is not None))  # fmt: skip


if __name__ == "__main__":
    main()

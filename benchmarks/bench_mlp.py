"""Epoch time of deepnet against PyTorch on the small MLPs deepnet is made for.

Both train the same network (float32, same batches, plain SGD or Nesterov) on the bundled MNIST
in the same run, with the same number of threads; the ratio printed is PyTorch's time divided
by deepnet's (above 1: deepnet is faster). PyTorch is optional (`pip install torch`); without
it only deepnet's times are printed.

    python benchmarks/bench_mlp.py [--epochs 2] [--threads 2]

Run it alone: a second busy process on a 2-core machine makes any timing meaningless.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

CASES = [
    # (label, hidden sizes, hidden activations, batch size); outputs are 10 softmax units
    ("784-50-25-10 tanh/sigmoid, batch 64", (50, 25), ("tanh", "sigmoid"), 64),
    ("784-512-256-10 relu, batch 128", (512, 256), ("relu", "relu"), 128),
]


def time_deepnet(x, y, hidden, acts, batch, epochs) -> float:
    from deepnet import Dense, Model

    layers = [Dense(h, a, init="he_normal") for h, a in zip(hidden, acts, strict=True)]
    model = Model([*layers, Dense(10, "softmax")])
    opt = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}
    model.fit(x[:1000], y[:1000], epochs=1, batch_size=batch, optimizer=opt, seed=0)  # warm-up
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch, optimizer=opt, seed=0)
    return (time.perf_counter() - start) / epochs


def time_torch(x, y, hidden, acts, batch, epochs) -> float:
    import torch

    modules, width = [], x.shape[1]
    for h, a in zip(hidden, acts, strict=True):
        modules += [torch.nn.Linear(width, h), {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
                                                "sigmoid": torch.nn.Sigmoid}[a]()]  # fmt: skip
        width = h
    net = torch.nn.Sequential(*modules, torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def epoch(n: int) -> None:
        order = torch.randperm(n)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            # deepnet tracks the running loss and accuracy; do the same work here.
            loss.item()

    epoch(1000)  # warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        epoch(len(x))
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from deepnet.datasets import load_mnist

    data = load_mnist()
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("PyTorch is not installed: printing deepnet's times only")
    for label, hidden, acts, batch in CASES:
        ours = time_deepnet(data.x_train, data.y_train, hidden, acts, batch, args.epochs)
        line = f"{label:<40} deepnet {ours:6.2f} s/epoch"
        if torch is not None:
            theirs = time_torch(data.x_train, data.y_train, hidden, acts, batch, args.epochs)
            line += (
                f"   torch {torch.__version__} {theirs:6.2f} s/epoch   ratio {theirs / ours:.2f}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""Train the contrib ``regularized`` recipe (or a candidate variant of it) on MNIST.

Candidates are compared on the dev set only: unless ``--final`` is given, the test split is
replaced by the recipe's dev split, so the real test images are never evaluated. ``--final``
trains the chosen recipe and scores the test set once.

    .venv/bin/python benchmarks/regularized_mnist.py --candidate regularized --final
    .venv/bin/python benchmarks/regularized_mnist.py --candidate no-shift --epochs 3

Prefix ``OPENBLAS_NUM_THREADS=1`` when the machine's cores are busy with other work: OpenBLAS
threads that wait for a busy core stall far longer than one thread takes alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import attrs

from deepnet import Callback
from deepnet.core.data import Dataset, train_dev_split
from deepnet.datasets import load_mnist
from deepnet.recipes import Recipe, run_recipe
from deepnet_plugins_contrib.recipes import POSTAL, REGULARIZED


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="regularized", choices=list(candidates()))
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--subset", type=int, help="train on the first N training images only")
    parser.add_argument("--final", action="store_true", help="evaluate the real test set")
    parser.add_argument("--save", help="write the trained model here (.npz)")
    parser.add_argument("--json", help="append the summary as one JSON line to this file")
    return parser.parse_args(argv)


def candidates() -> dict[str, Recipe]:
    """The recipes compared on the dev set: the chosen one and the variants it beat."""
    front = REGULARIZED.front
    # Without batch norm: relu on the convolutions instead.
    no_bn = tuple(
        {**s, "activation": "relu"} if s["name"] == "conv2d" else s
        for s in front
        if s["name"] != "batch_norm"
    )
    no_bn_no_shift = tuple(s for s in no_bn if s["name"] != "random_shift")
    variants = [
        (
            "no-shift",
            "no random shifts",
            {"front": tuple(s for s in front if s["name"] != "random_shift")},
        ),
        ("no-bn", "no batch norm (relu convs)", {"front": no_bn}),
        ("no-bn-no-shift", "no batch norm, no shifts", {"front": no_bn_no_shift}),
        (
            "no-bn-no-shift-adam",
            "no batch norm, no shifts, Adam lr 1e-3 cosine",
            {"front": no_bn_no_shift, "optimizer": {"name": "adam"}, "lr": 1e-3},
        ),
        (
            "no-bn-no-shift-lr0.1",
            "no batch norm, no shifts, lr 0.1",
            {"front": no_bn_no_shift, "lr": 0.1},
        ),
    ]
    recipes = [REGULARIZED, POSTAL]
    recipes += [
        attrs.evolve(REGULARIZED, name=name, description=f"{REGULARIZED.name} with {what}", **diff)
        for name, what, diff in variants
    ]
    return {r.name: r for r in recipes}


class EpochPrinter(Callback):
    """Prints the layers once and a line per epoch."""

    def on_train_begin(self, model) -> None:
        for line in model.describe():
            print("   ", line, flush=True)

    def on_epoch_end(self, model, epoch, logs) -> bool:
        print(
            f"epoch {logs['epoch']:3d}  loss {logs['loss']:.4f}  train {logs['train_accuracy']:.4f}"
            f"  dev {logs.get('dev_accuracy', float('nan')):.4f}  lr {logs['lr']:.4f}"
            f"  {logs['seconds']:.1f}s",
            flush=True,
        )
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = candidates()[args.candidate]
    if args.epochs:
        recipe = attrs.evolve(recipe, epochs=args.epochs)
    start = time.perf_counter()
    data = load_mnist(normalize=recipe.normalize)
    x, y = data.x_train[: args.subset], data.y_train[: args.subset]
    if args.final:
        data = attrs.evolve(data, x_train=x, y_train=y)
    else:
        # The split run_recipe makes: its dev part stands in for the test set.
        _, _, x_dev, y_dev = train_dev_split(x, y, recipe.dev_fraction, recipe.seed)
        data = Dataset(x_train=x, y_train=y, x_test=x_dev, y_test=y_dev, name="mnist-dev")
    print(f"{recipe.name}: {recipe.description}", flush=True)
    model, summary = run_recipe(recipe, data, callbacks=[EpochPrinter()])
    summary["total_seconds"] = time.perf_counter() - start
    summary["seconds_per_epoch"] = summary["seconds"] / summary["epochs"]
    if not args.final:
        del summary["test_accuracy"]  # it is the dev accuracy again
    summary.update(
        candidate=recipe.name,
        train_images=len(x),
        final=args.final,
        blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        command=" ".join(sys.argv),
    )
    print(json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(summary) + "\n")
    if args.save:
        model.save(args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())

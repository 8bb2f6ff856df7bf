"""Experiment: train a digit model on MNIST plus digits cut out of synthetic postal strips.

Strips are composed (``deepnet.postal_set.compose_strip``) from MNIST *training* digits, cut
by a reader with ``--cutter``'s model, and every digit whose box matches its true box is kept
with its label. The default recipe (``--recipe postal``: contrib's CNN) is then trained on
MNIST's training set plus those digits, and the cutter and the new model read a postal set
(make it with ``deepnet postal synth SET --seed 11``; the evaluation set of seed 0 is for the
final word only).

    .venv/bin/python benchmarks/postal_cut_training.py --cutter default.npz --codes 3000 SET
"""

from __future__ import annotations

import argparse
import json

import attrs
import numpy as np

from deepnet.cli import load_model
from deepnet.core.data import Dataset, read_idx_split
from deepnet.datasets import MNIST_DIR, load_mnist
from deepnet.postal import CodeReader
from deepnet.postal_set import compose_strip, evaluate_set
from deepnet.recipes import RECIPES, run_recipe


def matches(found: tuple[int, ...], true: tuple[int, ...]) -> bool:
    """The found box's centre lies in the true box and covers 60% of it."""
    (t, left, b, r), (tt, tl, tb, tr) = found, true
    inter = max(0, min(b, tb) - max(t, tt)) * max(0, min(r, tr) - max(left, tl))
    centred = tt <= (t + b) / 2 <= tb and tl <= (left + r) / 2 <= tr
    return centred and inter >= 0.6 * (tb - tt) * (tr - tl)


def cut_digits(reader: CodeReader, codes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits ``(N, 784)`` uint8 and labels ``(N,)`` cut right out of ``codes`` strips."""
    images, labels = read_idx_split(MNIST_DIR, "train")
    by_digit = [np.flatnonzero(labels == d) for d in range(10)]
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(codes):
        code = rng.integers(0, 10, 5)
        picture, boxes = compose_strip([images[rng.choice(by_digit[d])] for d in code], rng)
        cut = reader.segment(picture)
        for digit, found, true, label in zip(cut.digits, cut.boxes, boxes, code, strict=True):
            if matches(found, true):
                xs.append(np.clip(np.rint(digit), 0, 255).astype(np.uint8).ravel())
                ys.append(label)
    return np.array(xs), np.array(ys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("postal_set", help="a set from `deepnet postal synth` to read")
    parser.add_argument("--cutter", required=True, help="the model that cuts the strips")
    parser.add_argument("--codes", type=int, default=3000, help="strips to cut (5 digits each)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the strips")
    parser.add_argument("--train-seed", type=int, help="the recipe's seed (default: its own)")
    parser.add_argument("--save", help="write the model trained with cut digits here")
    parser.add_argument(
        "--recipe", choices=["default", "postal"], default="default", help="postal: contrib's CNN"
    )
    args = parser.parse_args()

    cutter = load_model(args.cutter)
    x_cut, y_cut = cut_digits(CodeReader(cutter, expect_digits=5), args.codes, args.seed)
    mnist = load_mnist(normalize="none", dtype="uint8")
    data = Dataset(
        x_train=np.concatenate([mnist.x_train, x_cut]),
        y_train=np.concatenate([mnist.y_train, y_cut]),
        x_test=mnist.x_test,
        y_test=mnist.y_test,
        name="mnist+cut",
        normalization="none",
    )
    recipe = RECIPES["default"]
    if args.recipe == "postal":
        from deepnet_plugins_contrib.recipes import POSTAL as recipe
    if args.train_seed is not None:
        recipe = attrs.evolve(recipe, seed=args.train_seed)
    model, summary = run_recipe(recipe, data)
    if args.save:
        model.save(args.save)
    report = {"cut_digits": len(y_cut), "mnist_test_accuracy": summary["test_accuracy"]}
    for name, m in [("cutter", cutter), ("with_cut_digits", model)]:
        result = evaluate_set(CodeReader(m, expect_digits=5), args.postal_set, jobs=2)
        at10 = next(r for r in result["rejection_table"] if r["rejection"] == 0.1)
        report[name] = {"codes": result["code_accuracy"], "at_10%_rejected": at10["accuracy"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

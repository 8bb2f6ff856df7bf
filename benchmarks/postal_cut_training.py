"""Experiment: train a digit model on MNIST plus digits cut out of synthetic postal strips.

Strips are composed from MNIST *training* digits, cut by a reader with ``--cutter``'s model,
and every digit whose box matches its true box is kept with its label
(``deepnet.postal_cut.cut_training_digits``; ``deepnet postal cut-set`` writes the same digits
as a data directory for ``deepnet train --data-dir``). The default recipe (``--recipe postal``:
contrib's CNN) is then trained on MNIST's training set plus those digits, and the cutter and
the new model read a postal set (make it with ``deepnet postal synth SET --seed 11``; the
evaluation set of seed 0 is for the final word only).

    .venv/bin/python benchmarks/postal_cut_training.py --cutter default.npz --codes 3000 SET
"""

from __future__ import annotations

import argparse
import json

import attrs
import numpy as np

from deepnet.cli import load_model
from deepnet.core.data import Dataset
from deepnet.datasets import load_mnist
from deepnet.postal import CodeReader
from deepnet.postal_cut import cut_training_digits
from deepnet.postal_set import evaluate_set
from deepnet.recipes import RECIPES, run_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("postal_set", help="a set from `deepnet postal synth` to read")
    parser.add_argument("--cutter", required=True, help="the model that cuts the strips")
    parser.add_argument("--codes", type=int, default=3000, help="strips to cut (5 digits each)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the strips")
    parser.add_argument("--jobs", type=int, default=1, help="processes cutting the strips")
    parser.add_argument("--train-seed", type=int, help="the recipe's seed (default: its own)")
    parser.add_argument("--save", help="write the model trained with cut digits here")
    parser.add_argument(
        "--recipe", choices=["default", "postal"], default="default", help="postal: contrib's CNN"
    )
    args = parser.parse_args()

    cutter = load_model(args.cutter)
    reader = CodeReader(cutter, expect_digits=5)
    x_cut, y_cut, composed = cut_training_digits(
        reader, codes=args.codes, seed=args.seed, jobs=args.jobs
    )
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
    report = {
        "cut_digits": len(y_cut),
        "of": composed,
        "mnist_test_accuracy": summary["test_accuracy"],
    }
    for name, m in [("cutter", cutter), ("with_cut_digits", model)]:
        result = evaluate_set(CodeReader(m, expect_digits=5), args.postal_set, jobs=2)
        at10 = next(r for r in result["rejection_table"] if r["rejection"] == 0.1)
        report[name] = {"codes": result["code_accuracy"], "at_10%_rejected": at10["accuracy"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Where codes are lost: the synthetic strips read again, their wrong codes sorted by cause.

Composes the strips `deepnet postal synth --count N --seed S` writes (the same pictures, with
the true boxes and MNIST digits the PNGs leave out), reads them with MODEL (several: pooled as
`--with` pools them, see `--combine`), and sorts every wrong code into one of three kinds:

- ``cut wrong``: some read box is off its true box (centre outside it, overlap under 60%, or
  a left or right edge more than 0.15 of its height away);
- ``hard digit``: the cut is right, and a misread digit is one the model misreads also as the
  MNIST original (a digit that could be read either way);
- ``misread``: the cut is right, and the model reads the misread digits' originals right.

It prints the counts among all codes and among those accepted at ``--reject`` (the least
confident codes sent to a human), which is where the rejection target's errors come from.

    .venv/bin/python benchmarks/postal_errors.py MODEL [MODEL ...] --count 2000 --seed 11
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Sequence

import numpy as np

from deepnet.cli import load_model
from deepnet.ensemble import COMBINE
from deepnet.postal import CodeRead, CodeReader
from deepnet.postal_cut import matches
from deepnet.postal_set import Strip, accepted, compose_set, mnist_test_digits

KINDS = ("right", "cut wrong", "hard digit", "misread")
#: A read box's left or right edge this far (in true box heights) from the true one is a wrong cut.
EDGE = 0.15


def cut_right(read: CodeRead, strip: Strip) -> bool:
    """Whether every read box is its true box (see the module's ``cut wrong``)."""
    if len(read.boxes) != len(strip.boxes):
        return False
    for (t, left, b, r), true in zip(read.boxes, strip.boxes, strict=True):
        h = true[2] - true[0]
        near = abs(left - true[1]) <= EDGE * h and abs(r - true[3]) <= EDGE * h
        if not (near and matches((t, left, b, r), true)):
            return False
    return True


def kind(read: CodeRead, strip: Strip, alone: np.ndarray) -> str:
    """``read``'s kind among :data:`KINDS`; ``alone``: the model's class of each MNIST test
    digit ``(10000,)``."""
    if read.code == strip.code:
        return "right"
    if not cut_right(read, strip):
        return "cut wrong"
    labels = [int(c) for c in strip.code]
    wrong = [k for k, (a, b) in enumerate(zip(read.code, strip.code, strict=True)) if a != b]
    hard = any(alone[strip.indices[k]] != labels[k] for k in wrong)
    return "hard digit" if hard else "misread"


def main(argv: Sequence[str] | None = None) -> dict[str, collections.Counter]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="digit models (.npz); several are pooled")
    parser.add_argument("--count", type=int, default=1000, help="strips, as postal synth's")
    parser.add_argument("--seed", type=int, default=11, help="as postal synth's")
    parser.add_argument("--reject", type=float, default=0.1, help="share of codes rejected")
    parser.add_argument("--jobs", type=int, default=2, help="processes cutting the strips")
    parser.add_argument("--combine", choices=COMBINE, default=COMBINE[0], help="as postal eval's")
    args = parser.parse_args(argv)
    strips = list(compose_set(args.count, seed=args.seed))
    models = [load_model(m) for m in args.models]
    reader = CodeReader(models, expect_digits=len(strips[0].code), combine=args.combine)
    reads = reader.read_many([s.picture for s in strips], jobs=args.jobs)
    images, _ = mnist_test_digits()
    alone = reader.score(images).argmax(axis=1)
    kinds = [kind(r, s, alone) for r, s in zip(reads, strips, strict=True)]
    everyone = collections.Counter(kinds)
    kept = accepted(np.array([r.confidence for r in reads]), args.reject)  # as postal eval's
    accepted_kinds = collections.Counter(kinds[i] for i in kept)
    print(f"models: {', '.join(args.models)}; {args.count} strips of seed {args.seed}")
    print(f"{'':12s}{'all':>8s}{f'accepted at {args.reject:.0%} rejected':>28s}")
    for k in KINDS:
        print(f"{k:12s}{everyone[k]:8d}{accepted_kinds[k]:28d}")
    right = accepted_kinds["right"] / max(1, len(kept))
    print(f"right: {everyone['right'] / len(reads):.2%} of all, {right:.2%} of the accepted")
    return {"all": everyone, "accepted": accepted_kinds}


if __name__ == "__main__":
    main()

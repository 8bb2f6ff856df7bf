"""Benchmark: reading postal codes end to end, against the floor any reader of them pays.

Reads the first ``--codes`` pictures of a postal set (``deepnet postal synth``) with a model in
``--jobs`` processes, round after round. Each round also times the floor: the same files
decoded by Pillow, smoothed by one Gaussian filter and labelled once into connected components
(scipy.ndimage), in as many processes, the two in alternating order. It prints both rates per
round and their ratio, how many floors a code costs: this machine's speed changes by the hour
(the same reading took 70 to 191 codes/s), and a rate alone does not say whether the code or
the machine changed.

    .venv/bin/python benchmarks/postal_read.py MODEL SET [--codes 300] [--rounds 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from threadpoolctl import threadpool_limits

from deepnet.cli import load_model
from deepnet.images import read_grayscale
from deepnet.postal import CodeReader
from deepnet.postal_set import read_set


def floor(path: Path) -> int:
    """What any reader does to a picture: decode it, smooth it, label its ink."""
    from scipy import ndimage

    gray = read_grayscale(path)
    smooth = ndimage.gaussian_filter(gray, 1.0)
    return ndimage.label(smooth < smooth.mean())[1]


def floor_many(paths: Sequence[Path], jobs: int) -> None:
    if jobs == 1:
        for p in paths:
            floor(p)
        return
    with warnings.catch_warnings():
        # As CodeReader's workers: Python 3.12+ warns on fork in a process with BLAS threads.
        warnings.filterwarnings("ignore", ".*fork.*", DeprecationWarning)
        pool = mp.get_context("fork").Pool(jobs)
    with pool:
        pool.map(floor, paths, chunksize=max(1, len(paths) // (4 * jobs)))


def rate(work: Callable[[], object], count: int) -> float:
    """Pictures per second of one call of ``work``."""
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the digit model reading the codes (.npz)")
    parser.add_argument("postal_set", help="a directory written by `deepnet postal synth`")
    parser.add_argument("--codes", type=int, default=300, help="pictures read per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="processes, for both")
    args = parser.parse_args(argv)
    pairs = read_set(args.postal_set)[: args.codes]
    paths = [p for p, _ in pairs]
    reader = CodeReader(load_model(args.model), expect_digits=len(pairs[0][1]))
    procs = f"{args.jobs} process{'es' if args.jobs > 1 else ''}"
    print(f"model: {args.model}, set: {args.postal_set}, {len(paths)} codes, {procs}")
    print("round  read codes/s  floor codes/s  read/floor")
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        floor_many(paths[:4], args.jobs)  # imports and caches warm, as reading's own
        reader.read_many(paths[:4], jobs=args.jobs)
        for k in range(args.rounds):
            # Alternating order, so that neither always runs in the other's wake.
            jobs = [
                ("floor", lambda: floor_many(paths, args.jobs)),
                ("read", lambda: reader.read_many(paths, jobs=args.jobs)),
            ]
            rates = {name: rate(work, len(paths)) for name, work in jobs[:: 1 - 2 * (k % 2)]}
            rows.append(rates)
            ratio = rates["floor"] / rates["read"]
            print(f"{k + 1:5d}  {rates['read']:12.1f}  {rates['floor']:13.1f}  {ratio:9.1f}x")
    read = statistics.median(r["read"] for r in rows)
    base = statistics.median(r["floor"] for r in rows)
    ratio = statistics.median(r["floor"] / r["read"] for r in rows)
    print(
        f"median: reading {read:.0f} codes/s, floor {base:.0f} codes/s: a code costs "
        f"{ratio:.1f} floors"
    )
    return {"read": read, "floor": base, "ratio": ratio}


if __name__ == "__main__":
    main()

"""Save a model over one file again and again, SIGKILLed at random moments; check the file.

Run by tests/test_atomic_save.py as ``python save_under_kill.py DIR KILLS SEED``. Each round
forks a child that saves two models alternately over ``DIR/m.npz`` until it is killed with
SIGKILL a random delay of up to three save times after its first save ended; the file must
then load as one of the two models. Prints a JSON summary. Forking (of this single-threaded
process) rather than starting a fresh interpreter per round makes hundreds of rounds take
seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from deepnet import Dense, Model, load


def save_forever(models: list[Model], path: Path, ready: int) -> None:
    try:
        for i in range(10**9):
            models[i % 2].save(path)
            if i == 0:
                os.write(ready, b"!")
    finally:
        os._exit(0)


def main(directory: Path, kills: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    models = [
        Model([Dense(256, "relu"), Dense(10, "softmax")]).build((784,), seed=s) for s in (1, 2)
    ]
    path = directory / "m.npz"
    probe = rng.random((4, 784), dtype=np.float32)
    expected = [m.predict_proba(probe) for m in models]
    start = time.perf_counter()
    for m in models:
        m.save(path)
    save_seconds = (time.perf_counter() - start) / 2
    summary = {"rounds": kills, "save_ms": round(save_seconds * 1e3, 2), "loaded_as": [0, 0],
               "killed_mid_save": 0, "failures": []}  # fmt: skip
    for _ in range(kills):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            save_forever(models, path, ready_w)
        # The delay counts from the end of the child's first save, not from the fork: a child
        # can take longer to start (and to warm up) than a save takes, and the kills would then
        # land before its first save ended, the file always holding the previous round's model.
        os.read(ready_r, 1)
        os.close(ready_r)
        os.close(ready_w)
        time.sleep(rng.uniform(0, 3 * save_seconds))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        # A temporary file left behind means the kill came in the middle of a save.
        temporaries = list(directory.glob(".m.npz.*.tmp"))
        summary["killed_mid_save"] += bool(temporaries)
        for t in temporaries:
            t.unlink()
        try:
            out = load(path).predict_proba(probe)
        except Exception as exc:
            summary["failures"].append(f"{type(exc).__name__}: {exc}")
            continue
        which = [i for i, e in enumerate(expected) if np.array_equal(out, e)]
        if len(which) != 1:
            summary["failures"].append("loaded a model that is neither the old nor the new one")
        else:
            summary["loaded_as"][which[0]] += 1
    return summary


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))

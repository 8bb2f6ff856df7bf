"""``deepnet postal synth|eval`` and what ``deepnet predict --code`` prints.

Attaches itself to the ``deepnet`` group of :mod:`deepnet.cli`; the reading itself is in
:mod:`deepnet.postal`, the synthetic set and its evaluation in :mod:`deepnet.postal_set`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from deepnet.cli import _Group, main, min_confidence_option
from deepnet.postal import CodeReader, save_debug


def predict_codes(
    model: Any,
    inputs: Sequence[str],
    *,
    min_confidence: float,
    expect_digits: int | None,
    debug_dir: str | None,
    normalize: str | None,
    as_json: bool,
) -> None:
    """``deepnet predict --code``: read the code in each picture and print it."""
    from deepnet.cli import UserError, emit_json

    for path in inputs:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file")
        if path.lower().endswith(".npy"):
            raise UserError(f"{path}: --code reads pictures (PNG, JPEG, ...), not .npy arrays")
    reader = CodeReader(
        model, min_confidence=min_confidence, expect_digits=expect_digits, normalize=normalize
    )
    records = []
    for path in inputs:
        segmented = reader.segment(path)
        read = reader.classify([segmented])[0]
        if debug_dir:
            save_debug(debug_dir, Path(path).stem, segmented.digits, read)
        records.append({"input": path, **read.as_dict()})
    if as_json:
        emit_json(records)
        return
    for r in records:
        verdict = f"needs a human: {r['reason']}" if r["needs_human"] else "ok"
        click.echo(f"{r['input']}: {r['code']}  ({verdict})")
        click.echo("  " + "  ".join(f"{d['digit']} {d['confidence']:.1%}" for d in r["digits"]))
    if debug_dir:
        click.echo(f"normalized digits written to {debug_dir}")


@click.group(cls=_Group)
def postal() -> None:
    """Postal codes: make a synthetic set from MNIST test digits, and score reading it.

    \b
    Reading one picture: deepnet predict MODEL code.png --code --expect-digits 5
    """


@postal.command()
@click.argument("out_dir", metavar="OUT_DIR")
@click.option(
    "--count", type=click.IntRange(min=1), default=1000, show_default=True, help="Codes to write."
)
@click.option(
    "--length", type=click.IntRange(min=1), default=5, show_default=True, help="Digits per code."
)
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed, the same set.")
def synth(out_dir: str, count: int, length: int, seed: int) -> None:
    """Write COUNT strips of LENGTH MNIST test digits as PNGs plus codes.csv in OUT_DIR.

    Random size, spacing (sometimes touching), vertical jitter, stroke thickness, slight
    rotation, blur, noise and specks, either polarity; the same seed gives the same set.
    """
    from deepnet.postal_set import synthesize

    path = synthesize(out_dir, count, length=length, seed=seed)
    click.echo(f"wrote {count} codes of {length} digits to {out_dir} (true codes: {path})")


@postal.command("eval")
@click.argument("model_path", metavar="MODEL")
@click.argument("set_dir", metavar="SET_DIR")
@min_confidence_option
@click.option(
    "--expect-digits",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="The codes' known length, guiding segmentation (0: unknown).",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the first N codes.")
@click.option(
    "--errors",
    "show_errors",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Also list the first N codes read wrong.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cut pictures into digits in this many processes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate(
    model_path: str,
    set_dir: str,
    min_confidence: float,
    expect_digits: int,
    limit: int | None,
    show_errors: int,
    jobs: int,
    as_json: bool,
) -> None:
    """Read every code of SET_DIR (from `deepnet postal synth`) and score the reads.

    Prints whole-code and digit accuracy, the accuracy among accepted codes at each
    rejection rate (the least confident codes sent to a human first) and the throughput,
    end to end (reading the PNG files included).
    """
    from deepnet.cli import emit_json, load_model
    from deepnet.postal_set import evaluate_set

    model = load_model(model_path)
    reader = CodeReader(model, min_confidence=min_confidence, expect_digits=expect_digits or None)
    result = evaluate_set(reader, set_dir, limit=limit, jobs=jobs)
    if as_json:
        emit_json({"model": model_path, "set": set_dir, **result})
        return
    click.echo(f"model: {model_path}")
    length = f"{expect_digits} digits expected" if expect_digits else "length not given"
    click.echo(f"set: {set_dir}, {result['codes']} codes ({length})")
    click.echo(
        f"codes read exactly: {result['code_accuracy']:.2%}   digits: "
        f"{result['digit_accuracy']:.2%}   right length: {result['right_length']:.2%}"
    )
    click.echo(
        f"throughput: {result['codes_per_second']:.0f} codes/s "
        f"({result['codes']} codes in {result['seconds']:.1f} s with {jobs} process"
        f"{'es' if jobs > 1 else ''}, files read included; "
        f"{result['codes_per_cpu_second']:.0f} codes per CPU second)"
    )
    click.echo("")
    click.echo("rejected  below confidence  accuracy of accepted codes")
    for row in result["rejection_table"]:
        threshold = f"{row['threshold']:.3f}" if row["rejection"] else "-"
        click.echo(f"{row['rejection']:>8.0%}  {threshold:>16}  {row['accuracy']:>26.2%}")
    click.echo("")
    accepted = result["accepted_accuracy"]
    right = "none left" if math.isnan(accepted) else f"{accepted:.2%} of the accepted codes right"
    click.echo(
        f"at --min-confidence {min_confidence}: {result['rejected']:.1%} sent to a human, {right}"
    )
    for e in result["errors"][:show_errors]:
        click.echo(f"  {e['file']}: true {e['true']}, read {e['read']} ({e['confidence']:.1%})")


main.add_command(postal)

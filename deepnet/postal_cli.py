"""``deepnet postal synth|eval|cut-set`` and what ``deepnet predict --code`` prints.

Attaches itself to the ``deepnet`` group of :mod:`deepnet.cli`; the reading itself is in
:mod:`deepnet.postal`, the synthetic set and its evaluation in :mod:`deepnet.postal_set`, the
training digits cut from strips in :mod:`deepnet.postal_cut`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from deepnet.cli import _Group, main, min_confidence_option, with_option
from deepnet.postal import CodeReader, save_debug


def predict_codes(
    model: Any | Sequence[Any],
    inputs: Sequence[str],
    *,
    min_confidence: float,
    expect_digits: int | None,
    debug_dir: str | None,
    normalize: str | None,
    as_json: bool,
    combine: str,
) -> None:
    """``deepnet predict --code``: read the code in each picture and print it."""
    from deepnet.cli import UserError, emit_json

    for path in inputs:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file")
        if path.lower().endswith(".npy"):
            raise UserError(f"{path}: --code reads pictures (PNG, JPEG, ...), not .npy arrays")
    reader = CodeReader(
        model,
        min_confidence=min_confidence,
        expect_digits=expect_digits,
        normalize=normalize,
        combine=combine,
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


def jobs_option(help: str) -> Any:
    """``--jobs N``: work in N processes."""
    return click.option(
        "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help=help
    )


@click.group(cls=_Group)
def postal() -> None:
    """Postal codes: make a synthetic set from MNIST test digits, and score reading it;
    make training data of digits cut from strips.

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
@jobs_option("Cut pictures into digits in this many processes.")
@with_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate(
    model_path: str,
    set_dir: str,
    min_confidence: float,
    expect_digits: int,
    limit: int | None,
    show_errors: int,
    jobs: int,
    with_paths: tuple[str, ...],
    combine: str,
    as_json: bool,
) -> None:
    """Read every code of SET_DIR (from `deepnet postal synth`) and score the reads.

    Prints whole-code and digit accuracy, the accuracy among accepted codes at each
    rejection rate (the least confident codes sent to a human first) and the throughput,
    end to end (reading the PNG files included).
    """
    from deepnet.cli import emit_json, load_models
    from deepnet.postal_set import evaluate_set

    models = load_models(model_path, with_paths)
    reader = CodeReader(
        models,
        min_confidence=min_confidence,
        expect_digits=expect_digits or None,
        combine=combine,
    )
    result = evaluate_set(reader, set_dir, limit=limit, jobs=jobs)
    if as_json:
        record = {"model": model_path, "with": list(with_paths), "combine": combine}
        emit_json({**record, "set": set_dir, **result})
        return
    pooled = f" ({combine})" if with_paths else ""
    click.echo(f"model: {' + '.join((model_path, *with_paths))}{pooled}")
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


@postal.command("cut-set")
@click.argument("out_dir", metavar="OUT_DIR")
@click.option(
    "--cutter",
    "cutter_path",
    required=True,
    metavar="MODEL",
    help="The digit model whose reader cuts the strips.",
)
@click.option(
    "--codes",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Strips of 5 training digits to compose and cut.",
)
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed of the strips.")
@click.option(
    "--data-dir",
    metavar="DIR",
    help="An MNIST-layout IDX directory to start from [default: the bundled MNIST].",
)
@jobs_option("Cut strips in this many processes (the same set whatever the number).")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it holds an earlier cut set.")
def cut_set(
    out_dir: str,
    cutter_path: str,
    codes: int,
    seed: int,
    data_dir: str | None,
    jobs: int,
    force: bool,
) -> None:
    """Make training data: the training digits plus digits cut from strips of them.

    Composes CODES strips of 5 training digits (never test digits: the postal sets are made
    of those), cuts them with MODEL's reader, keeps each digit cut where it was written, and
    writes OUT_DIR in MNIST's layout: the training set followed by the kept digits, the test
    set unchanged. Train on it with: deepnet train --data-dir OUT_DIR
    """
    import sys

    from deepnet.cli import UserError, load_model
    from deepnet.postal_cut import check_out_dir, write_cut_set

    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"{data_dir}: no such data directory")
    check_out_dir(Path(out_dir), force)  # before loading anything
    reader = CodeReader(load_model(cutter_path), expect_digits=5)
    with click.progressbar(length=codes, label="cutting strips", file=sys.stderr) as bar:
        manifest = write_cut_set(
            out_dir,
            reader,
            codes=codes,
            seed=seed,
            data_dir=data_dir,
            force=force,
            jobs=jobs,
            progress=bar.update,
            cutter=cutter_path,
        )
    kept, composed = manifest["kept"], manifest["composed"]
    train = manifest["train"]
    click.echo(
        f"cut {composed} digits from {codes} strips in {manifest['seconds']:.1f} s "
        f"({jobs} process{'es' if jobs > 1 else ''}); kept {kept} ({kept / composed:.1%}) "
        "cut where they were written"
    )
    click.echo(
        f"wrote {out_dir}: {train['total']} training images ({train['base']} + {kept} cut), "
        f"{manifest['test']} test images unchanged"
    )
    click.echo(f"train on it: deepnet train --data-dir {out_dir}")


main.add_command(postal)

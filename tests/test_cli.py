"""The ``deepnet`` command line, through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from deepnet import Activation, __version__, hookimpl
from deepnet.cli import Progress, build_recipe, main
from deepnet.core import plugins
from deepnet.core.serialization import load_model
from deepnet.datasets import MNIST_DIR, load_idx_dir, read_idx
from deepnet.recipes import RECIPES, Recipe
from deepnet.testing import make_plugin

COMMANDS = ["list", "plugins", "train", "evaluate", "predict", "check", "info"]
# A quick model that reaches > 90% on MNIST: 784-64-10 on 10k undistorted images for 2 epochs.
QUICK = [
    "--no-augment",
    "--layers",
    "64:relu,10:softmax",
    "--init",
    "he_normal",
    "--optimizer",
    "sgd",
    "--lr",
    "0.1",
    "--momentum",
    "0.9",
    "--schedule",
    "constant",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--limit",
    "10000",
    "--seed",
    "0",
]


@contextlib.contextmanager
def builtins_only(extra: list) -> Iterator[None]:
    """Registry loads see only the built-ins plus ``extra``, whatever else is installed.

    Reloads by the CLI (--disable-plugin, --strict-plugins) included, so the tests do not
    depend on third-party plugins in the environment.
    """
    real = plugins.load_plugins

    def load(extra_: tuple = (), **kwargs):
        kwargs.setdefault("use_entry_points", False)
        return real(extra=[*extra_, *extra], **kwargs)

    saved = plugins._registry  # not get_registry(): that would load one, warnings and all
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugins, "load_plugins", load)
        plugins.set_registry(None)
        try:
            yield
        finally:
            plugins.set_registry(saved)


@pytest.fixture(autouse=True)
def installed() -> Iterator[list]:
    """Append plugin objects to this list to install them for the test's commands."""
    extra: list = []
    with builtins_only(extra):
        yield extra


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    if code in (0, 1):
        # Not a crash: click exits on purpose. A bug would show up as another exception here.
        assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def user_error(*args: str, match: str, code: int = 2) -> str:
    """Run a mistaken command: exit ``code``, one line on stderr matching, no traceback."""
    result = run(*args, code=code)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    # Plugin warnings, one line each, may come first; the error itself is one line.
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained through `deepnet train`, with its output, plot and history."""
    out = tmp_path_factory.mktemp("trained")
    with builtins_only([]):
        result = CliRunner().invoke(
            main,
            [
                "train",
                *QUICK,
                "--out",
                out / "m.npz",
                "--plot",
                out / "curves.png",
                "--history",
                out / "history.json",
            ],
        )
    assert result.exit_code == 0, (result.output, result.exception)
    return types.SimpleNamespace(dir=out, model=out / "m.npz", output=result.stdout)


def assert_png(path: Path, min_w: int, min_h: int) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_w and im.height >= min_h
        im.load()
        # A real picture, not a blank canvas.
        assert len(np.unique(np.asarray(im.convert("L")))) > 10


# -- conventions ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command):
    result = run(*([command] if command else []), "--help")
    assert result.stdout.startswith("Usage: ")
    if command is None:
        assert all(c in result.stdout for c in COMMANDS)


def script() -> list[str]:
    exe = Path(sys.executable).with_name("deepnet")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "deepnet.cli"]


def test_readme_commands_as_a_subprocess():
    help_ = subprocess.run([*script(), "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "train" in help_.stdout
    listing = subprocess.run(
        [*script(), "list", "--json"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    names = {(r["kind"], r["name"]) for r in json.loads(listing.stdout)}
    assert {("layer", "dense"), ("activation", "relu"), ("optimizer", "sgd")} <= names


def test_module_entry_point_works_too():
    proc = subprocess.run(
        [sys.executable, "-m", "deepnet.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "deepnet, version" in proc.stdout


def test_usage_error_exit_code():
    result = run("train", "--epochs", "zero", code=2)
    assert "Invalid value for '--epochs'" in result.stderr


# -- list ----------------------------------------------------------------------------------


def test_list_json_has_every_kind_with_params_provider_and_doc():
    records = json.loads(run("list", "--json").stdout)
    assert {r["kind"] for r in records} >= {"layer", "activation", "loss", "optimizer"}
    dense = next(r for r in records if r["name"] == "dense")
    assert dense["distribution"] == "deepnet" and dense["version"]
    assert dense["plugin"] == "deepnet.layers" and dense["doc"].startswith("Fully connected")
    params = {p["name"]: p for p in dense["params"]}
    assert params["units"]["required"] and params["init"]["default"] == "glorot_uniform"
    assert not dense["ambiguous"] and dense["qualified_name"] == "deepnet/dense"


def test_list_text_groups_by_kind_and_shows_empty_kinds():
    out = run("list").stdout
    assert "sgd(lr=0.01, momentum=0.0, nesterov=False)" in out
    assert f"[deepnet {__version__}; plugin deepnet.optimizers]" in out
    for kind in ("layers", "losses", "regularizers", "schedules", "callbacks", "recipes"):
        assert re.search(rf"^{kind} \(\d+\)$", out, re.M), kind


@pytest.mark.parametrize("kind", ["loss", "losses", "LOSS"])
def test_list_one_kind(kind):
    records = json.loads(run("list", kind, "--json").stdout)
    assert records and {r["kind"] for r in records} == {"loss"}


def test_list_unknown_kind_is_a_usage_error():
    assert "'widget' is not a kind" in run("list", "widget", code=2).stderr


@attrs.define
class OtherRelu(Activation):
    """Someone else's relu."""

    def forward(self, z):
        return np.maximum(z, 0)

    def derivative(self, z, a):
        return (z > 0).astype(z.dtype)


def plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def test_list_shows_both_providers_of_a_colliding_name(installed):
    installed.append(
        plugin(
            "otherpkg",
            deepnet_register_activations=lambda register: register(OtherRelu, name="relu"),
        )
    )
    records = [r for r in json.loads(run("list", "activation", "--json").stdout)]
    relus = [r for r in records if r["name"] == "relu"]
    assert {r["qualified_name"] for r in relus} == {"deepnet/relu", "otherpkg/relu"}
    assert all(r["ambiguous"] for r in relus)
    result = run("list", "activation")
    assert "  deepnet/relu" in result.stdout and "  otherpkg/relu" in result.stdout
    assert "pick one by qualified name: deepnet/relu, otherpkg/relu" in result.stderr


def test_list_recipes_with_their_provenance(installed):
    installed.append(make_plugin("mine", recipe={"small": SMALL}))
    out = run("list", "recipes").stdout.splitlines()
    assert out[0] == "recipes (4)"
    assert out[1:3] == [
        f"  default  [deepnet {__version__}; plugin deepnet.recipes]",
        f"      {RECIPES['default'].description}",
    ]
    assert out[7:9] == ["  small  [in-process; plugin mine]", "      784-16-10 relu/softmax"]
    records = {r["name"]: r for r in json.loads(run("list", "recipe", "--json").stdout)}
    assert list(records) == ["default", "seed-a", "seed-b", "small"]
    assert records["seed-a"]["plugin"] == "deepnet.recipes" and records["seed-a"]["params"] == []
    assert records["small"]["plugin"] == "mine" and records["small"]["distribution"] is None


# -- plugins -------------------------------------------------------------------------------


def test_plugins_json():
    infos = json.loads(run("plugins", "--json").stdout)
    layers = next(p for p in infos if p["name"] == "deepnet.layers")
    assert layers["status"] == "loaded" and layers["distribution"] == "deepnet"
    assert layers["hooks"] == ["deepnet_register_layers"] and layers["components"] == 3


def test_disable_plugin_option():
    infos = json.loads(run("--disable-plugin", "deepnet.schedules", "plugins", "--json").stdout)
    assert next(p for p in infos if p["name"] == "deepnet.schedules")["status"] == "disabled"
    assert next(p for p in infos if p["name"] == "deepnet.layers")["status"] == "loaded"
    # A disabled plugin's components are gone for the rest of the command.
    user_error(
        "--disable-plugin",
        "deepnet.schedules",
        "train",
        "--schedule",
        "cosine",
        match="unknown schedule 'cosine'",
    )


def test_disabling_an_unknown_plugin_warns():
    result = run("--disable-plugin", "nosuch", "plugins")
    assert (
        "warning: disabled plugin 'nosuch' matches no plugin; `deepnet plugins` lists them"
        in result.stderr.splitlines()
    )


def broken_registration(register):
    raise RuntimeError("boom")


@pytest.fixture
def broken_plugin_installed(installed):
    installed.append(plugin("broken", deepnet_register_activations=broken_registration))


def test_plugin_failure_is_one_warning_line_and_listed(broken_plugin_installed):
    result = run("plugins")
    warning = [w for w in result.stderr.splitlines() if "'broken'" in w]
    assert len(warning) == 1 and warning[0].startswith("warning: deepnet plugin 'broken' skipped")
    assert re.search(
        r"^broken .*failed .*\n +error: register failed: RuntimeError: boom", result.stdout, re.M
    )


def test_strict_plugins_fails_with_one_line(broken_plugin_installed):
    user_error("--strict-plugins", "plugins", match="plugin 'broken' register failed", code=1)


def test_check_reports_a_plugin_that_failed_to_load(broken_plugin_installed):
    result = run("check", "--json", code=1)
    assert json.loads(result.stdout)["failed_plugins"][0]["name"] == "broken"


# -- train ---------------------------------------------------------------------------------


def test_train_output_ends_with_the_test_accuracy(trained):
    lines = trained.output.strip().splitlines()
    assert re.fullmatch(r"test accuracy: \d+\.\d\d%", lines[-1])
    assert float(lines[-1].split()[-1].rstrip("%")) > 90
    assert any(re.fullmatch(r"train accuracy: \d+\.\d\d%", line) for line in lines)
    assert any(re.fullmatch(r"dev accuracy: \d+\.\d\d%", line) for line in lines)
    # Not a terminal: one summary line per epoch, no progress bar.
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("dev " in e and "loss " in e for e in epochs)
    assert "#" not in trained.output


def test_train_saves_model_with_data_record(trained):
    model = load_model(trained.model)
    assert model.meta["data"] == {
        "dataset": "mnist",
        "data_dir": None,
        "normalize": "scale",
        "limit": 10000,
    }
    assert model.meta["training"]["optimizer"] == {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
    }
    # Trained on raw pixels: the model normalizes them in its first layer.
    assert model.layers[0].method == "scale"
    assert [layer.units for layer in model.layers[1:]] == [64, 10]


def test_train_writes_learning_curves_and_history(trained):
    assert_png(trained.dir / "curves.png", 600, 300)
    history = json.loads((trained.dir / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert {"loss", "train_accuracy", "dev_accuracy"} <= history["epochs"][0].keys()


def test_preset_fields_are_kept_unless_overridden():
    recipe = build_recipe("seed-a", epochs=1)
    assert recipe.epochs == 1 and recipe.layers == ("50:tanh", "25:sigmoid", "10:sigmoid")
    assert recipe.loss == "binary_cross_entropy" and recipe.normalize == "standardize"
    default = build_recipe("default", momentum=0.5)
    assert default.optimizer == {"name": "sgd", "momentum": 0.5, "nesterov": True}
    assert default.schedule == "cosine"


def test_the_training_header_names_the_augmentation_with_its_options():
    from deepnet.cli import _describe

    assert _describe(RECIPES["default"], 784).endswith(", random_affine(elastic=0.7)")
    assert _describe(build_recipe("seed-a", augment=True), 784).endswith(", random_affine")


def test_augment_flag_adds_or_removes_random_affine():
    assert build_recipe("seed-a", augment=True).augment == ({"name": "random_affine"},)
    assert build_recipe("seed-a").augment == ()
    assert build_recipe("default", augment=False).augment == ()
    assert build_recipe("default", augment=True).augment == RECIPES["default"].augment != ()


def test_naming_the_optimizer_starts_from_its_defaults_and_opt_params_apply():
    recipe = build_recipe(
        "default",
        optimizer="sgd",
        opt_params=("momentum=0.8", "nesterov=true", "lr=0.05"),
        schedule="cosine",
        schedule_params=("warmup_epochs=1",),
        shuffle=False,
    )
    assert recipe.optimizer == {"name": "sgd", "momentum": 0.8, "nesterov": True}
    assert recipe.lr == 0.05 and recipe.shuffle is False
    assert recipe.schedule == {"name": "cosine", "warmup_epochs": 1}


def test_train_on_an_idx_directory_with_standardize_then_evaluate(tmp_path):
    """A model remembers its data and normalization; evaluate recomputes the same statistics."""
    idx = tmp_path / "digits-idx"
    idx.mkdir()
    x = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[:600]
    y = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")[:600]
    for stem, a in [
        ("train-images-idx3-ubyte", x[:500]),
        ("train-labels-idx1-ubyte", y[:500]),
        ("t10k-images-idx3-ubyte", x[500:]),
        ("t10k-labels-idx1-ubyte", y[500:]),
    ]:
        dims = b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (idx / stem).write_bytes(bytes([0, 0, 8, a.ndim]) + dims + a.tobytes())
    model_path = tmp_path / "m.npz"
    args = ["--layers", "10:softmax", "--epochs", "1", "--normalize", "standardize"]
    out = run("train", "--data-dir", idx, *args, "--out", model_path).stdout
    assert "data: digits-idx, 500 training images" in out
    report = json.loads(run("evaluate", model_path, "--json").stdout)
    model = load_model(model_path)
    assert model.meta["data"]["data_dir"] == str(idx.resolve())
    # The model standardizes raw pixels itself, with the training images' statistics.
    data = load_idx_dir(idx, normalize="none", dtype="uint8")
    assert [type(layer).__name__ for layer in model.layers[:2]] == ["RandomAffine", "Normalize"]
    assert model.layers[1].method == "standardize"
    assert report["normalize"] == "standardize" and report["samples"] == 100
    assert report["accuracy"] == model.evaluate(data.x_test, data.y_test)["accuracy"]
    assert report["accuracy"] == model.meta["metrics"]["test_accuracy"]
    shutil.rmtree(idx)
    user_error("evaluate", model_path, match=r"digits-idx, which no longer exists; give the data")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--layers", "10:relux"], r"unknown activation 'relux'\. Did you mean 'relu'\?"),
        (["--layers", "10:relu,abc"], r"malformed layer spec 'abc'.*e\.g\. 50:tanh"),
        (["--layers", "\u00b2:relu"], r"malformed layer spec '\u00b2:relu'"),
        (["--loss", "mse"], r"unknown loss 'mse'"),
        (["--optimizer", "adamw"], r"unknown optimizer 'adamw'"),
        (["--opt-param", "beta=1"], r"cannot create optimizer 'sgd'.*Parameters: lr, momentum"),
        (["--opt-param", "momentum"], r"malformed parameter 'momentum': write NAME=VALUE"),
        (["--init", "he_norml"], r"unknown initializer 'he_norml'\. Did you mean 'he_normal'"),
        (["--schedule", "cosin"], r"unknown schedule 'cosin'\. Did you mean 'cosine'"),
        (["--momentum", "0"], r"nesterov needs momentum > 0"),
        (["--data-dir", "/no/such/dir"], r"^Error: /no/such/dir: no such data directory$"),
        (["--dataset", "mnist", "--data-dir", "x"], r"give --dataset or --data-dir, not both"),
        (
            ["--preset", "seed-c"],
            r"unknown recipe 'seed-c'\. Did you mean 'seed-b', 'seed-a'\? Available recipes: "
            r"default, seed-a, seed-b\.$",
        ),
    ],
)
def test_train_mistakes_are_one_line_exit_2(args, match):
    user_error("train", *args, match=match)


#: A recipe a plugin might register: 784-16-10 with an extra layer among the dense ones.
SMALL = Recipe(
    name="small",
    description="784-16-10 relu/softmax",
    layers=("16:relu", "10:softmax"),
    extra_layers=((1, {"name": "flatten"}),),
)


def test_train_a_plugin_recipe_with_every_option(installed, tmp_path):
    installed.append(make_plugin("mine", recipe={"small": SMALL}))
    assert "`deepnet list recipe`" in run("train", "--help").stdout
    args = ["--epochs", "1", "--limit", "200", "--seed", "3", "--batch-size", "50"]
    out = run("train", "--preset", "small", *args, "--out", tmp_path / "m.npz").stdout
    assert out.startswith("training small: 784-16-flatten-10 relu/softmax, ")
    assert "1 epochs, batch 50" in out and out.endswith("\n") and "test accuracy: " in out
    model = load_model(tmp_path / "m.npz")
    assert model.meta["recipe"] == "small" and model.meta["training"]["seed"] == 3
    # By qualified name, and with the dense layers replaced (the extra one keeps its place).
    out = run("train", "--preset", "mine/small", *args, "--layers", "8:relu,10:softmax").stdout
    assert out.startswith("training small: 784-8-flatten-10 relu/softmax, ")
    user_error(
        "train",
        "--preset",
        "small",
        "--layers",
        "10:softmax",
        match=r"small puts flatten before dense layer 2, so --layers needs at least 2 layers",
    )


def test_train_output_layer_must_match_the_classes():
    user_error(
        "train",
        "--layers",
        "32:relu,5:softmax",
        "--limit",
        "100",
        match=r"output layer has 5 units but the data has 10 classes",
    )


def test_divergence_is_a_one_line_failure():
    args = ["--layers", "32:relu,10:softmax", "--init", "normal", "--lr", "1e30", "--limit", "500"]
    user_error("train", *args, code=1, match=r"loss became nan .* Lower the learning rate")


def test_train_plot_without_matplotlib_fails_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    user_error(
        "train", "--plot", "x.png", code=1, match=r"needs matplotlib.*pip install 'deepnet\[plot\]'"
    )


def test_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    progress = Progress(epochs=1, bar=True, file=tty)
    for b in range(10):
        progress.on_batch_end(None, 0, b, 10, loss=1.0 / (b + 1))
    logs = {"loss": 0.3, "train_accuracy": 0.9, "lr": 0.1, "seconds": 1.0}
    progress.on_epoch_end(None, 0, logs)
    text = tty.getvalue()
    assert "epoch 1/1  loss 0.2929" in text  # running mean of the ten batch losses
    assert "10/10" in text and "[####" in text
    # The bar's line is cleared and the epoch's summary written over it.
    last = text.rstrip().split("\n")[-1]
    assert last.endswith("\r\x1b[2K\x1b[?25hepoch 1/1  loss 0.3000  train 90.00%  lr 0.1  1.0s")


# -- evaluate ------------------------------------------------------------------------------


def test_evaluate_text(trained):
    out = run("evaluate", trained.model).stdout
    assert re.search(r"^accuracy: 9\d\.\d\d%", out, re.M)
    assert "class  precision  recall     f1  support" in out
    assert re.search(r"^    7 +\d+\.\d\d% +\d+\.\d\d% +\d+\.\d\d% +1028$", out, re.M)
    assert "confusion matrix (rows: true class, columns: predicted)" in out
    assert re.search(r"most confused \(true -> predicted\): \d->\d \(\d+\)", out)


def test_evaluate_json_and_confusion_picture(trained, tmp_path):
    picture = tmp_path / "confusion.png"
    report = json.loads(run("evaluate", trained.model, "--json", "--confusion", picture).stdout)
    assert {"accuracy", "loss", "classes", "macro", "confusion", "most_confused"} <= report.keys()
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == report["samples"] == 10000
    assert report["accuracy"] == np.trace(confusion) / 10000
    meta = load_model(trained.model).meta
    assert report["accuracy"] == meta["metrics"]["test_accuracy"]
    assert_png(picture, 400, 400)


def test_evaluate_limit(trained):
    assert (
        json.loads(run("evaluate", trained.model, "--limit", "50", "--json").stdout)["samples"]
        == 50
    )


@pytest.mark.parametrize("command", ["evaluate", "predict", "info"])
def test_not_a_model_file(command, tmp_path):
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))
    (tmp_path / "notes.txt").write_text("not a model\n")
    extra = [tmp_path / "arrays.npz"] if command == "predict" else []
    user_error(
        command,
        tmp_path / "arrays.npz",
        *extra,
        match=r"arrays\.npz: not a deepnet model file \(no deepnet header\)",
    )
    user_error(
        command,
        tmp_path / "notes.txt",
        *extra,
        match=r"notes\.txt: not a deepnet model file \(not an \.npz archive\)",
    )
    user_error(
        command,
        tmp_path / "missing.npz",
        *extra,
        match=r"missing\.npz: no such model file; train one with: deepnet train --out",
    )


def test_evaluate_confusion_without_matplotlib(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    user_error(
        "evaluate",
        trained.model,
        "--confusion",
        "c.png",
        "--limit",
        "10",
        code=1,
        match=r"pip install 'deepnet\[plot\]'",
    )


# -- predict -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_test_digits():
    x = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:8]
    y = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:8]
    return x, y


def test_predict_pictures_of_mnist_digits_either_polarity(trained, mnist_test_digits, tmp_path):
    x, y = mnist_test_digits
    model = load_model(trained.model)
    right = np.flatnonzero(model.predict(x.reshape(len(x), -1)) == y)[:3]
    assert len(right) == 3
    files, expected = [], []
    for i in right:
        for name, pixels in (("dark", 255 - x[i]), ("light", x[i])):
            path = tmp_path / f"{i}-{name}-on-light.png"
            Image.fromarray(pixels).resize((100, 80), Image.LANCZOS).save(path)
            files.append(path)
            expected.append(int(y[i]))
    results = json.loads(run("predict", trained.model, *files, "--json", "--top", "3").stdout)
    assert [r["prediction"] for r in results] == expected
    for r in results:
        assert {"input", "prediction", "probability", "top", "probabilities"} <= r.keys()
        assert len(r["top"]) == 3 and len(r["probabilities"]) == 10
        assert r["top"][0] == {"digit": r["prediction"], "probability": r["probability"]}
    text = run("predict", trained.model, files[0]).stdout
    assert re.fullmatch(rf"{re.escape(str(files[0]))}: {expected[0]} \(\d+\.\d%\)\n", text)


def test_predict_digits_drawn_with_a_pen(trained, tmp_path):
    """Not MNIST at all: thick strokes on a large light page, and light on a dark JPEG."""
    seven = Image.new("L", (240, 320), 245)
    ImageDraw.Draw(seven).line([(50, 60), (190, 60), (100, 270)], fill=20, width=22)
    seven.save(tmp_path / "seven.png")
    zero = Image.new("RGB", (300, 260), (30, 40, 50))
    ImageDraw.Draw(zero).ellipse([100, 30, 200, 230], outline=(230, 230, 220), width=16)
    zero.save(tmp_path / "zero.jpg", quality=85)
    results = json.loads(
        run(
            "predict", trained.model, tmp_path / "seven.png", tmp_path / "zero.jpg", "--json"
        ).stdout
    )
    assert [r["prediction"] for r in results] == [7, 0]


def test_predict_npy_arrays_match_the_model(trained, mnist_test_digits, tmp_path):
    x, _ = mnist_test_digits
    np.save(tmp_path / "one.npy", x[0])
    np.save(tmp_path / "rows.npy", x.reshape(len(x), -1))
    results = json.loads(
        run("predict", trained.model, tmp_path / "one.npy", tmp_path / "rows.npy", "--json").stdout
    )
    model = load_model(trained.model)
    expected = model.predict(x.reshape(len(x), -1))  # raw pixels: the model normalizes
    assert [r["input"] for r in results[:2]] == [
        str(tmp_path / "one.npy"),
        f"{tmp_path}/rows.npy[0]",
    ]
    assert [r["prediction"] for r in results] == [expected[0], *expected]
    proba = model.predict_proba(x.reshape(len(x), -1))
    np.testing.assert_allclose(results[1]["probabilities"], proba[0], rtol=1e-6)


def test_predict_mistakes(trained, tmp_path):
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("hi")
    np.save(tmp_path / "small.npy", np.zeros((10, 10)))
    user_error("predict", trained.model, tmp_path / "nope.png", match=r"nope\.png: no such file")
    user_error("predict", trained.model, tmp_path / "blank.png", match=r"blank\.png: no digit")
    user_error("predict", trained.model, tmp_path / "notes.txt", match=r"not a picture Pillow")
    user_error(
        "predict",
        trained.model,
        tmp_path / "small.npy",
        match=r"small\.npy: expected an array of shape \(28, 28\) or \(N, 784\)",
    )
    assert "Missing argument 'INPUT...'" in run("predict", trained.model, code=2).stderr


def test_predict_without_pillow_says_what_to_install(trained, tmp_path, monkeypatch):
    Image.new("L", (40, 40), 0).save(tmp_path / "digit.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    user_error(
        "predict",
        trained.model,
        tmp_path / "digit.png",
        code=1,
        match=r"^Error: reading images needs Pillow, which is not installed; "
        r"install it with: pip install 'deepnet\[image\]'$",
    )


# -- info ----------------------------------------------------------------------------------


def test_info_text(trained):
    out = run("info", trained.model).stdout
    assert re.search(r"0  normalize\(method=scale\) +- +0 params", out)
    assert re.search(
        r"1  dense\(units=64, init=he_normal, bias_init=zeros\) +relu +50,240 params "
        rf" \[deepnet {re.escape(__version__)}\]",
        out,
    )
    assert re.search(r"2  dense\(units=10, .*softmax +650 params", out)
    assert "total 50,890 parameters" in out
    assert f"loss: categorical_cross_entropy(reduction=mean)  [deepnet {__version__}]" in out
    assert "training: 2 epochs, batch 64, lr 0.1, sgd(lr=0.1, momentum=0.9" in out
    assert "data: mnist, normalize scale, first 10000 images" in out
    assert re.search(r"metrics: train \d+\.\d\d%, dev \d+\.\d\d%, test 9\d\.\d\d%", out)


def test_info_json(trained):
    header = json.loads(run("info", trained.model, "--json").stdout)
    assert header["total_params"] == 50890 and header["dtype"] == "float32"
    assert [layer["params"] for layer in header["layers"]] == [0, 50240, 650]
    assert header["layers"][1]["distribution"] == "deepnet"
    assert header["meta"]["data"]["normalize"] == "scale"
    assert header["meta"]["metrics"]["test_accuracy"] > 0.9


# -- check ---------------------------------------------------------------------------------


def test_check_everything_passes():
    result = run("check")
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"\d+ checked: 0 failed", lines[-1])
    assert all(line.startswith("PASS  ") for line in lines[:-1])
    assert any(re.match(r"PASS  activation +relu +\d+ checks", line) for line in lines)


def test_check_named_and_by_kind():
    records = json.loads(run("check", "relu", "deepnet/sgd", "--json").stdout)["components"]
    assert [(r["kind"], r["name"]) for r in records] == [
        ("activation", "relu"),
        ("optimizer", "sgd"),
    ]
    assert all(r["passed"] and r["results"][0]["check"] == "create" for r in records)
    kinds = {
        r["kind"] for r in json.loads(run("check", "--kind", "loss", "--json").stdout)["components"]
    }
    assert kinds == {"loss"}


def test_check_unknown_name():
    user_error("check", "relux", match=r"unknown component 'relux'\. Did you mean 'relu'\?")
    user_error("check", "relu", "--kind", "loss", match=r"unknown loss 'relu'")


@attrs.define
class Leaky(Activation):
    """Claims a derivative it does not have."""

    def forward(self, z):
        return np.where(z > 0, z, 0.1 * z)

    def derivative(self, z, a):
        return np.ones_like(z)


def test_check_failure_exits_1_with_the_reason(installed):
    installed.append(
        plugin("leaks", deepnet_register_activations=lambda register: register(Leaky, name="leaky"))
    )
    result = run("check", "leaky", "relu", code=1)
    lines = result.stdout.strip().splitlines()
    assert re.match(r"FAIL  activation +leaky +.*gradient: ", lines[0])
    assert lines[1].startswith("PASS  activation  relu")
    assert lines[-1] == "2 checked: 1 failed"

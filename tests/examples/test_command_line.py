"""The examples as a newcomer runs them: --data_dir alone reads the release there, a default run
prints its own lines only, TFRA is imported for dynamic tables only, a user's mistake is one line
with status 2, --help answers without TensorFlow, and retrieval reports test recall@k, NDCG and
MRR beside a learning-curve plot."""

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import app

from example_runner import EXAMPLES, EXAMPLES_DIR, NOISE, TINY, parse, run_example
from tf_freqsgd.data import load_movielens, train_val_test_split
from tf_freqsgd.evaluation import top_k_metrics
from tf_freqsgd.models.retrieval import RECALL_KS, ranked_items

# TINY on a release's whole file (the tiny one below), with a line per epoch.
ON_RELEASE = tuple(arg for arg in TINY if not arg.startswith(("--num_ratings", "--verbose"))) + ("--verbose=2",)
USERS, ITEMS, RATINGS = 40, 30, 600


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A tiny MovieLens 100K release: u.data and u.item in ML-100K's formats."""
    directory = tmp_path_factory.mktemp("ml-100k")
    rng = np.random.default_rng(0)
    pairs = rng.choice(USERS * ITEMS, RATINGS, replace=False)
    with open(directory / "u.data", "w") as file:
        for pair, rating in zip(pairs, rng.integers(1, 6, RATINGS)):
            file.write(f"{pair // ITEMS + 1}\t{pair % ITEMS + 1}\t{rating}\t{874965758 + pair}\n")
    with open(directory / "u.item", "w", encoding="latin-1") as file:
        for movie in range(1, ITEMS + 1):
            file.write(f"{movie}|Movie {movie} (1995)|01-Jan-1995||http://example.com|" + "|".join("0" * 19) + "\n")
    return directory


def own_lines(stderr):
    """``stderr`` without ``-X importtime``'s lines."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def imported(stderr, module):
    return re.search(rf"\| +{re.escape(module)}$", stderr, re.MULTILINE) is not None


def test_data_dir_alone_reads_the_release_found_there(release, tmp_path):
    completed = run_example("retrieval", f"--data_dir={release}", *ON_RELEASE, f"--metrics_json={tmp_path / 'm.json'}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.splitlines()[0] == f"Data: ml-100k from {release}: {USERS} users, {ITEMS} items, " \
                                               f"{RATINGS} ratings"
    with open(tmp_path / "m.json") as file:
        record = json.load(file)
    assert record["dataset"]["name"] == "ml-100k" and record["config"]["dataset"] == "auto"


def test_synthetic_only_when_asked(release):
    assert parse("retrieval").dataset == "synthetic"  # no --data_dir: make demo's run
    assert parse("retrieval", "--dataset=synthetic-1m").dataset == "synthetic-1m"
    assert parse("retrieval", f"--data_dir={release}").dataset == "auto"
    assert parse("retrieval", "--dataset=ml-100k", f"--data_dir={release}").dataset == "ml-100k"
    with pytest.raises(app.UsageError, match="--data_dir is read by a MovieLens release; --dataset=synthetic is "
                                             "generated"):
        parse("retrieval", "--dataset=synthetic", f"--data_dir={release}")
    with open(os.path.join(EXAMPLES_DIR, os.pardir, "Makefile")) as file:
        demo = re.search(r"^demo:.*\n\t\$\(PY\) examples/movielens_retrieval\.py (.*)$", file.read(), re.MULTILINE)
    assert "--data_dir" not in demo.group(1) and "--dataset" not in demo.group(1)


def test_synthetic_header_names_its_source(tmp_path):
    completed = run_example("ranking", *TINY, f"--metrics_json={tmp_path / 'm.json'}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.splitlines()[0] == ("Data: synthetic (synthetic-100k-n1500, generated; --data_dir reads a "
                                                "MovieLens release): 943 users, 1,682 items, 1,500 ratings")


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_default_run_prints_its_own_lines_only_and_no_tfra(example, tmp_path):
    completed = run_example(example, *TINY, "--verbose=2", f"--metrics_json={tmp_path / 'm.json'}",
                            f"--export_dir={tmp_path / 'export'}", python_options=("-X", "importtime"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert own_lines(completed.stderr) == []
    assert not [word for word in NOISE if word in completed.stdout]
    assert imported(completed.stderr, "tensorflow_recommenders")  # the test is sound
    assert not imported(completed.stderr, "tensorflow_recommenders_addons")


def test_dynamic_tables_import_tfra_quietly_and_verbosity_shows_its_lines(tmp_path):
    args = ("--embedding=dynamic", *TINY, f"--metrics_json={tmp_path / 'm.json'}")
    quiet = run_example("retrieval", *args, python_options=("-X", "importtime"))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert imported(quiet.stderr, "tensorflow_recommenders_addons")
    assert own_lines(quiet.stderr) == []
    assert "_SingleDeviceSaver" not in quiet.stdout
    verbose = run_example("retrieval", *args, "--verbosity=0")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "dynamic_embedding.GraphKeys has already been deprecated" in verbose.stderr
    assert "An exception occurred when import horovod.tensorflow" in verbose.stderr
    assert "_SingleDeviceSaver removed" in verbose.stdout


def malformed_release(release, tmp_path):
    directory = tmp_path / "ml-100k"
    directory.mkdir()
    lines = (release / "u.data").read_text().splitlines()
    lines[6] = "7\t3\tfive\t874965758"
    (directory / "u.data").write_text("\n".join(lines) + "\n")
    (directory / "u.item").write_bytes((release / "u.item").read_bytes())
    return directory


@pytest.mark.parametrize("case, args, message", [
    ("bad data_dir", ["--data_dir=/no/such/ml-100k"], "`data_dir` '/no/such/ml-100k' is not a directory."),
    ("malformed line", ["--data_dir={malformed}"], "{malformed}/u.data, line 7: expected user<tab>movie<tab>rating"),
    ("diverged sgd", [*TINY, "--optimizer=sgd", "--learning_rate=1e6"],
     "Training diverged: sgd at --learning_rate=1e+06 met a non-finite loss or gradient (the loss of batch "),
    ("diverged counter_sgd", [*TINY, "--learning_rate=1e6"],
     "Training diverged: counter_sgd at --learning_rate=1e+06 met a non-finite loss or gradient (CounterSGD: "
     "gradient for variable '"),
    ("mlet flag", ["--mlet_inner_dim=16"], "--mlet_inner_dim applies to --embedding=mlet only"),
    ("auto needs data_dir", ["--dataset=auto"], "--dataset=auto needs --data_dir"),
    ("logq needs counters", ["--logq=counter", "--optimizer=adagrad"],
     "--logq=counter needs an optimizer that keeps counters"),
])
def test_a_users_mistake_is_one_line_with_status_2(release, tmp_path, case, args, message):
    malformed = malformed_release(release, tmp_path) if case == "malformed line" else None
    completed = run_example("retrieval", *(arg.format(malformed=malformed) for arg in args),
                            f"--metrics_json={tmp_path / 'm.json'}")
    assert completed.returncode == 2, completed.stderr[-3000:]
    lines = own_lines(completed.stderr)
    assert len(lines) == 1 and lines[0].startswith("movielens_retrieval.py: error: "), completed.stderr[-3000:]
    assert message.format(malformed=malformed) in lines[0]


def test_an_internal_error_keeps_its_traceback():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv[1:] = []\n"
            "import common, movielens_retrieval as example\n"
            "from absl import app\n"
            "def run(config): raise KeyError('a bug')\n"
            "example.define_flags()\n"
            "app.run(common.main_of(example.EXAMPLE, example.LEARNING_RATES, run), flags_parser=common.parse_flags)\n")
    completed = subprocess.run([sys.executable, "-c", code, EXAMPLES_DIR], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert "Traceback (most recent call last)" in completed.stderr and "KeyError: 'a bug'" in completed.stderr


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_help_answers_within_2_seconds_without_tensorflow_with_status_0(example):
    """The median of 3 runs, in CPU seconds of the child (user + sys: what a loaded machine does not
    inflate), and in wall seconds unless the machine is loaded."""
    wall, cpu = [], []
    for _ in range(3):
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        completed = run_example(example, "--help", timeout=60)
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert completed.returncode == 0 and "--optimizer" in completed.stdout, completed.stderr[-3000:]
    assert statistics.median(cpu) < 2.0, cpu
    if os.getloadavg()[0] < os.cpu_count():
        assert statistics.median(wall) < 2.0, wall
    completed = run_example(example, "--help", python_options=("-X", "importtime"), timeout=60)
    assert not imported(completed.stderr, "tensorflow") and not imported(completed.stderr, "tf_freqsgd")


def test_retrieval_reports_test_metrics_and_a_learning_curve(tmp_path):
    completed = run_example("retrieval", *TINY, "--epochs=2", "--verbose=2", f"--metrics_json={tmp_path / 'm.json'}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name in ("recall@10", "recall@50", "recall@100", "ndcg@10", "mrr@100"):
        assert f"| test {name} |" in completed.stdout, name
    assert "val_recall@10: " in completed.stdout and "categorical_accuracy" not in completed.stdout
    assert f"Learning curve written to {tmp_path / 'm.png'}" in completed.stdout
    assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")


def test_exclude_rated_ranks_each_users_training_items_last(run_tiny, release):
    """Test recall, NDCG and MRR from the model's own top-k; recall as TFRS measures it; with
    --exclude_rated every held-out item ranks as high or higher (on the tiny release, a user rated
    a third of the catalogue in training)."""
    record, model, _ = run_tiny("retrieval", f"--data_dir={release}", f"--num_ratings={RATINGS}", "--exclude_rated")
    train, _, test = train_val_test_split(load_movielens("auto", release, num_ratings=RATINGS).ratings)
    k = max(RECALL_KS)
    rated = (train["user_id"], train["item_id"])
    excluded = ranked_items(model, test["user_id"], k, exclude=rated, keep=test["item_id"])
    included = ranked_items(model, test["user_id"], k)
    assert {name: value for name, value in record["metrics"].items() if "@" in name} == top_k_metrics(
        excluded, test["item_id"], recall_ks=RECALL_KS, ndcg_k=10, catalogue_size=ITEMS)

    def positions(ranked):
        return (ranked == test["item_id"][:, None]).argmax(axis=1)  # the whole catalogue is ranked

    assert (positions(excluded) <= positions(included)).all() and (positions(excluded) < positions(included)).any()
    by_tfrs = model.evaluate({"user_id": test["user_id"], "item_id": test["item_id"]}, return_dict=True, verbose=0)
    metrics = top_k_metrics(included, test["item_id"], recall_ks=RECALL_KS, ndcg_k=10, catalogue_size=ITEMS)
    for k in RECALL_KS:
        assert metrics[f"recall@{k}"] == pytest.approx(by_tfrs[f"recall@{k}"], abs=1e-6)
    assert parse("retrieval").exclude_rated is False  # the TFRS tutorial's evaluation by default

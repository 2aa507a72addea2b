"""The examples' SavedModels serve in a fresh Python with stock TensorFlow alone, keyed by the data
set's raw ids, and give the training model's outputs: retrieval's top-k movies and scores, ranking's
scores; unknown users get the most-trained movies (retrieval), unknown users and movies the
training split's mean label (ranking), flagged."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from example_runner import EXAMPLES, EXAMPLES_DIR, TINY, parse
from tf_freqsgd.data import ctr_view, load_movielens, train_val_test_split
from tf_freqsgd.export import saved_model_ops
from tf_freqsgd.models.row_state import counter_values, has_counters

NON_STOCK_OPS = ("TFRA>", "ResourceSparseApplyCounterSGD", "ResourceSparseApplyRowwiseAdagradCounter")
TOP_K = 7
CASES = {
    "retrieval-table": ("retrieval", "--embedding=table"),
    "retrieval-dynamic": ("retrieval", "--embedding=dynamic", "--logq=counter"),
    "retrieval-mlet": ("retrieval", "--embedding=mlet", "--mlet_inner_dim=16"),
    "retrieval-pep": ("retrieval", "--embedding=pep"),
    "retrieval-adagrad": ("retrieval", "--optimizer=adagrad"),
    "ranking-table": ("ranking", "--embedding=table"),
    "ranking-dynamic-ctr": ("ranking", "--embedding=dynamic", "--task=ctr"),
    "ranking-mlet": ("ranking", "--embedding=mlet", "--mlet_inner_dim=16"),
    "ranking-pep": ("ranking", "--embedding=pep"),
}

SERVE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    jobs_path, outputs_path = sys.argv[1:]
    with open(jobs_path) as file:
        jobs = json.load(file)
    served = {}
    for name, job in jobs.items():
        serve = tf.saved_model.load(job["export_dir"]).signatures["serving_default"]
        inputs = {key: tf.constant(np.asarray(value, np.int64)) for key, value in job["inputs"].items()}
        served[name] = {
            "outputs": {key: value.numpy().tolist() for key, value in serve(**inputs).items()},
            "inputs": {key: [spec.dtype.name, spec.shape.as_list()]
                       for key, spec in serve.structured_input_signature[1].items()},
        }
    for module in ("tf_freqsgd", "tensorflow_recommenders_addons", "tensorflow_recommenders"):
        assert module not in sys.modules, module
    with open(outputs_path, "w") as file:
        json.dump(served, file)
""")


UNKNOWN_USER, UNKNOWN_MOVIE = 10**9, 10**9 + 7  # synthetic raw ids are 1, 2, ...


def most_trained(model, train, num_items):
    """Per-item counts a cold-start user is served by: the counters, or the training split's counts."""
    if not has_counters(model.optimizer):
        return np.bincount(train["item_id"], minlength=num_items).astype(np.float32)
    ids, values = counter_values(model.optimizer, model.item_embedding)
    counts = np.zeros(num_items, np.float32)
    counts[ids] = values
    return counts


def expected_outputs(example, model, config, train, data):
    """The queries in raw ids (seen users and pairs, then unknown ones), and the training model's
    answers to them."""
    movie_ids, user_ids = data.items["movie_id"], data.users["user_id"]
    if example == "retrieval":
        users = np.unique(train["user_id"])[:5]
        scores, items = model.recommend(users, k=TOP_K)
        counts = most_trained(model, train, data.num_items)
        popular = np.argsort(-counts, kind="stable")[:TOP_K]
        return {"user_id": np.append(user_ids[users], UNKNOWN_USER)}, {
            "movie_ids": np.vstack([movie_ids[items.numpy()], movie_ids[popular]]),
            "scores": np.vstack([scores.numpy(), counts[popular]]),
            "cold_start": np.arange(6) == 5}
    pairs = {key: train[key][:8] for key in ("user_id", "item_id")}
    outputs = model(pairs).numpy()
    score = tf.sigmoid(outputs).numpy() if config.task == "ctr" else outputs
    mean_label = train["label" if config.task == "ctr" else "rating"].mean()
    return ({"user_id": np.r_[user_ids[pairs["user_id"]], UNKNOWN_USER, user_ids[pairs["user_id"][0]]],
             "movie_id": np.r_[movie_ids[pairs["item_id"]], movie_ids[0], UNKNOWN_MOVIE]},
            {"score": np.r_[score, mean_label, mean_label], "unknown_user": np.arange(10) == 8,
             "unknown_movie": np.arange(10) == 9})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each case trained on tiny data and exported; its queries, its answers in this process,
    and the SavedModel's answers in a fresh Python importing TensorFlow alone."""
    workdir = tmp_path_factory.mktemp("serving")
    data = load_movielens(num_ratings=1500)
    cases, jobs = {}, {}
    train = train_val_test_split(data.ratings)[0]
    for name, (example, *args) in CASES.items():
        if example == "retrieval":
            args.append(f"--top_k={TOP_K}")
        config = parse(example, *TINY, f"--export_dir={workdir / name / '1'}",
                       f"--metrics_json={workdir / name / 'metrics.json'}", *args)
        _, model = EXAMPLES[example].run(config)
        trained_on = ctr_view(train) if config.task == "ctr" else train
        inputs, expected = expected_outputs(example, model, config, trained_on, data)
        cases[name] = {"export_dir": config.export_dir, "inputs": inputs, "expected": expected}
        jobs[name] = {"export_dir": config.export_dir, "inputs": {k: v.tolist() for k, v in inputs.items()}}
    with open(workdir / "jobs.json", "w") as file:
        json.dump(jobs, file)
    env = {key: value for key, value in os.environ.items() if key not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    command = [sys.executable, "-c", SERVE_SCRIPT, str(workdir / "jobs.json"), str(workdir / "out.json")]
    completed = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(workdir / "out.json") as file:
        served = json.load(file)
    for name in cases:
        cases[name]["served"] = served[name]
    return cases


@pytest.mark.parametrize("name", list(CASES))
def test_fresh_tensorflow_serves_the_training_models_answers(exported, name):
    case = exported[name]
    served = case["served"]["outputs"]
    assert served.keys() == case["expected"].keys()
    for key, expected in case["expected"].items():
        if not np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_array_equal(served[key], expected)
        else:
            np.testing.assert_allclose(served[key], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_signature_and_graph_hold_stock_ops_only(exported, name):
    case = exported[name]
    expected_inputs = {"user_id": ["int64", [None]]}
    if name.startswith("ranking"):
        expected_inputs["movie_id"] = ["int64", [None]]
    assert case["served"]["inputs"] == expected_inputs
    if name.startswith("retrieval"):
        assert np.asarray(case["served"]["outputs"]["movie_ids"]).shape == (6, TOP_K)
    ops = {op for op, _ in saved_model_ops(case["export_dir"])}
    assert not [op for op in ops if op.startswith(NON_STOCK_OPS)]


def test_serve_demo_prints_titles_with_tensorflow_alone(exported):
    case = exported["retrieval-table"]
    env = {key: value for key, value in os.environ.items() if key not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    completed = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES_DIR, "serve_demo.py"), f"--export_dir={case['export_dir']}",
         "--users=" + ",".join(str(user) for user in case["inputs"]["user_id"][[0, -1]])],
        env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "imported of tf_freqsgd, tensorflow_recommenders_addons, tensorflow_recommenders, tf_keras: none" in (
        completed.stdout)
    data = load_movielens(num_ratings=1500)
    title_of = dict(zip(data.items["movie_id"].tolist(), data.items["title"]))
    first_movie = case["served"]["outputs"]["movie_ids"][0][0]
    assert f"1. {title_of[first_movie]}  (movie {first_movie}, score" in completed.stdout
    assert f"User {UNKNOWN_USER} (unknown: cold start, the most-trained movies):" in completed.stdout

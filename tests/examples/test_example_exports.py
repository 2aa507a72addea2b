"""The examples' SavedModels serve in a fresh Python with stock TensorFlow alone, and give the
training model's outputs: retrieval's top-k movies and scores, ranking's scores."""

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

NON_STOCK_OPS = ("TFRA>", "ResourceSparseApplyCounterSGD", "ResourceSparseApplyRowwiseAdagradCounter")
TOP_K = 7
CASES = {
    "retrieval-table": ("retrieval", "--embedding=table"),
    "retrieval-dynamic": ("retrieval", "--embedding=dynamic", "--logq=counter"),
    "retrieval-mlet": ("retrieval", "--embedding=mlet", "--mlet_inner_dim=16"),
    "retrieval-pep": ("retrieval", "--embedding=pep"),
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


def expected_outputs(example, model, config, train, movie_ids):
    """The training model's answers to the queries, and the queries (seen users and pairs)."""
    if example == "retrieval":
        users = np.unique(train["user_id"])[:5]
        scores, items = model.recommend(users, k=TOP_K)
        return {"user_id": users}, {"movie_ids": movie_ids[items.numpy()], "scores": scores.numpy()}
    pairs = {key: train[key][:8] for key in ("user_id", "item_id")}
    outputs = model(pairs).numpy()
    score = tf.sigmoid(outputs).numpy() if config.task == "ctr" else outputs
    return {"user_id": pairs["user_id"], "movie_id": movie_ids[pairs["item_id"]]}, {"score": score}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each case trained on tiny data and exported; its queries, its answers in this process,
    and the SavedModel's answers in a fresh Python importing TensorFlow alone."""
    workdir = tmp_path_factory.mktemp("serving")
    data = load_movielens(num_ratings=1500)
    movie_ids = data.items["movie_id"]
    cases, jobs = {}, {}
    train = train_val_test_split(data.ratings)[0]
    for name, (example, *args) in CASES.items():
        if example == "retrieval":
            args.append(f"--top_k={TOP_K}")
        config = parse(example, *TINY, f"--export_dir={workdir / name / '1'}",
                       f"--metrics_json={workdir / name / 'metrics.json'}", *args)
        _, model = EXAMPLES[example].run(config)
        trained_on = ctr_view(train) if config.task == "ctr" else train
        inputs, expected = expected_outputs(example, model, config, trained_on, movie_ids)
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
        if key == "movie_ids":
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
        assert np.asarray(case["served"]["outputs"]["movie_ids"]).shape == (5, TOP_K)
    ops = {op for op, _ in saved_model_ops(case["export_dir"])}
    assert not [op for op in ops if op.startswith(NON_STOCK_OPS)]


def test_ranking_export_names_unknown_movie_ids(exported):
    serve = tf.saved_model.load(exported["ranking-table"]["export_dir"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ids not in the catalogue:.*\[999999\]"):
        serve(user_id=tf.constant([0, 1], tf.int64), movie_id=tf.constant([1, 999999], tf.int64))


def test_serve_demo_prints_titles_with_tensorflow_alone(exported):
    case = exported["retrieval-table"]
    env = {key: value for key, value in os.environ.items() if key not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    completed = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES_DIR, "serve_demo.py"), f"--export_dir={case['export_dir']}",
         "--users=" + ",".join(str(user) for user in case["inputs"]["user_id"][:2])],
        env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "imported of tf_freqsgd, tensorflow_recommenders_addons, tensorflow_recommenders, tf_keras: none" in (
        completed.stdout)
    data = load_movielens(num_ratings=1500)
    title_of = dict(zip(data.items["movie_id"].tolist(), data.items["title"]))
    first_movie = case["served"]["outputs"]["movie_ids"][0][0]
    assert f"1. {title_of[first_movie]}  (movie {first_movie}, score" in completed.stdout

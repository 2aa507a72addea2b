"""The TF Serving requests of docs/serving.md ("# Serving the examples"), sent to exports of small
trained models in a fresh Python that imports TensorFlow alone.

Each documented request's JSON, parsed out of docs/serving.md so the docs cannot drift, is passed to
``serving_default`` as TF Serving passes it (columnar ``"inputs"``: one list per input; row
``"instances"``: one object per example), and the answer, shaped as TF Serving's REST response,
is checked: its fields, dtypes and shapes against the documented response and signature, its
cold-start and unknown flags against the documented ones, known users' answers against the Keras
model, unknown ones against the counters or the default score. The models are trained on the
synthetic set, whose raw ids (users 1..943, movies 1..1682) are ML-100K's.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd.data import as_dataset, load_movielens
from tf_freqsgd.data.ids import rows_of
from tf_freqsgd.models.ranking import RankingModel, export_ranking
from tf_freqsgd.models.retrieval import RetrievalModel, export_retrieval
from tf_freqsgd.models.row_state import counter_values

SERVING_DOC = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "serving.md")
SECTION = "# Serving the examples"
TOP_K = 10  # the examples' default --top_k, which the documented signature and response show
DTYPES = {"DT_INT64": "int64", "DT_FLOAT": "float32", "DT_BOOL": "bool"}
# retrieval-dynamic: the same requests to a TFRA-table model.
CASES = {"retrieval": ("retrieval", "table"), "retrieval-dynamic": ("retrieval", "dynamic"),
         "ranking": ("ranking", "table")}

SERVE_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    jobs_path, answers_path = sys.argv[1:]
    with open(jobs_path) as file:
        jobs = json.load(file)
    answers = {}
    for name, job in jobs.items():
        serve = tf.saved_model.load(job["export_dir"]).signatures["serving_default"]
        specs = serve.structured_input_signature[1]
        request = job["request"]
        if "inputs" in request:
            columns = request["inputs"]
        else:
            columns = {key: [instance[key] for instance in request["instances"]] for key in specs}
        outputs = serve(**{key: tf.constant(columns[key], spec.dtype) for key, spec in specs.items()})
        values = {key: value.numpy().tolist() for key, value in outputs.items()}
        if "inputs" in request:
            response = {"outputs": values}
        else:
            response = {"predictions": [dict(zip(values, row)) for row in zip(*values.values())]}
        answers[name] = {"response": response,
                         "dtypes": {key: value.dtype.name for key, value in outputs.items()},
                         "shapes": {key: value.shape.as_list() for key, value in outputs.items()}}
    answers["imported"] = [module for module in ("tf_freqsgd", "tensorflow_recommenders_addons",
                                                 "tensorflow_recommenders") if module in sys.modules]
    with open(answers_path, "w") as file:
        json.dump(answers, file)
""")


def serving_section():
    """The text of docs/serving.md from its SECTION heading to the next heading or the end."""
    with open(SERVING_DOC, encoding="utf-8") as file:
        text = file.read()
    start = re.search(rf"^{re.escape(SECTION)}$", text, re.M).end()
    following = re.search(r"^#", text[start:], re.M)
    return text[start:start + following.start()] if following else text[start:]


def documented_exchanges():
    """``{model name: (request, response)}``: each ``curl -d '<request>' .../<name>:predict`` of the
    section, and the first JSON block after it."""
    section = serving_section()
    exchanges = {}
    for curl in re.finditer(r"curl -d '(.*?)' http://localhost:8501/v1/models/(\w+):predict", section, re.S):
        response = re.compile(r"```json\n(.*?)```", re.S).search(section, curl.end())
        exchanges[curl.group(2)] = (json.loads(curl.group(1)), json.loads(response.group(1)))
    return exchanges


def documented_signature():
    """``{output name: (dtype, shape)}`` of the retrieval signature the section shows."""
    outputs = re.findall(r"outputs\['(\w+)'\] tensor_info:\s+dtype: (DT_\w+)\s+shape: \(([-\d, ]+)\)",
                         serving_section())
    return {name: (DTYPES[dtype], [None if size == "-1" else int(size) for size in shape.split(", ")])
            for name, dtype, shape in outputs}


def train(kind, embedding, data):
    """A small model of ``kind`` trained one epoch on all of ``data``'s ratings with CounterSGD."""
    tf.keras.utils.set_random_seed(0)
    if kind == "retrieval":
        model = RetrievalModel(data.num_users, data.num_items, embedding=embedding, dim=8)
        model.build_tables()
        dataset = as_dataset(data.ratings, 1024, shuffle=False)
    else:
        model = RankingModel(data.num_users, data.num_items, embedding=embedding, dim=8)
        model.build_tables()
        dataset = as_dataset(data.ratings, 1024, shuffle=False, label="rating")
    model.compile(tf_freqsgd.CounterSGD(0.02 if kind == "retrieval" else 0.1))
    model.fit(dataset, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Per case: the documented exchange, the model, and the fresh Python's answer."""
    workdir = tmp_path_factory.mktemp("readme_serving")
    exchanges = documented_exchanges()
    data = load_movielens(num_ratings=20_000)
    cases, jobs = {}, {}
    for name, (kind, embedding) in CASES.items():
        model = train(kind, embedding, data)
        export_dir = str(workdir / name / "1")
        if kind == "retrieval":
            export_retrieval(model, export_dir, data.items["movie_id"], user_ids=data.users["user_id"], k=TOP_K)
        else:
            export_ranking(model, export_dir, data.items["movie_id"], user_ids=data.users["user_id"],
                           default_score=float(data.ratings["rating"].mean()))
        request, response = exchanges[kind]
        cases[name] = {"kind": kind, "model": model, "request": request, "documented": response}
        jobs[name] = {"export_dir": export_dir, "request": request}
    with open(workdir / "jobs.json", "w") as file:
        json.dump(jobs, file)
    env = {key: value for key, value in os.environ.items() if key not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    completed = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(workdir / "jobs.json"),
                                str(workdir / "answers.json")],
                               cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(workdir / "answers.json") as file:
        answers = json.load(file)
    assert answers.pop("imported") == []
    for name, answer in answers.items():
        cases[name].update(answer)
    return data, cases


def test_the_readme_documents_both_models_with_ml100k_ids():
    exchanges = documented_exchanges()
    assert set(exchanges) == {"retrieval", "ranking"}
    assert exchanges["retrieval"][0] == {"inputs": {"user_id": [943, 944]}}
    assert [(row["user_id"], row["movie_id"]) for row in exchanges["ranking"][0]["instances"]] == [
        (943, 50), (943, 1683), (944, 50)]


@pytest.mark.parametrize("name", list(CASES))
def test_answers_have_the_documented_fields_dtypes_shapes_and_flags(served, name):
    case = served[1][name]
    documented, response = case["documented"], case["response"]
    assert response.keys() == documented.keys()
    if case["kind"] == "retrieval":
        outputs = response["outputs"]
        assert outputs.keys() == documented["outputs"].keys() == documented_signature().keys()
        for key, (dtype, shape) in documented_signature().items():
            assert case["dtypes"][key] == dtype
            assert [None, *case["shapes"][key][1:]] == shape
            assert np.shape(outputs[key]) == np.shape(documented["outputs"][key])
        assert outputs["cold_start"] == documented["outputs"]["cold_start"] == [False, True]
    else:
        assert case["dtypes"] == {"score": "float32", "unknown_user": "bool", "unknown_movie": "bool"}
        assert case["shapes"] == {key: [3] for key in case["dtypes"]}
        for answer, expected in zip(response["predictions"], documented["predictions"], strict=True):
            assert answer.keys() == expected.keys()
            assert (answer["unknown_user"], answer["unknown_movie"]) == (expected["unknown_user"],
                                                                         expected["unknown_movie"])


@pytest.mark.parametrize("name", ["retrieval", "retrieval-dynamic"])
def test_retrieval_answers_known_users_as_keras_and_others_by_the_counters(served, name):
    data, cases = served
    case = cases[name]
    model, outputs = case["model"], case["response"]["outputs"]
    rows = rows_of(data.users["user_id"], np.asarray(case["request"]["inputs"]["user_id"]))
    # A TFRA table holds the users trained only: the others have no vector of their own.
    known = (rows >= 0) & (np.isin(rows, data.ratings["user_id"]) if name == "retrieval-dynamic" else True)
    np.testing.assert_array_equal(outputs["cold_start"], ~known)
    scores, items = model.recommend(rows[known], k=TOP_K)
    np.testing.assert_array_equal(np.asarray(outputs["movie_ids"])[known], data.items["movie_id"][items.numpy()])
    np.testing.assert_allclose(np.asarray(outputs["scores"])[known], scores, rtol=1e-5, atol=1e-6)
    ids, counts = counter_values(model.optimizer, model.item_embedding)
    order = np.lexsort((ids, -counts))[:TOP_K]  # most counted first, ties in item order
    for row in np.flatnonzero(~known):
        np.testing.assert_array_equal(outputs["movie_ids"][row], data.items["movie_id"][ids[order]])
        np.testing.assert_allclose(outputs["scores"][row], counts[order], rtol=1e-6)


def test_ranking_answers_known_pairs_as_keras_and_others_the_default_score(served):
    data, cases = served
    case = cases["ranking"]
    instances, predictions = case["request"]["instances"], case["response"]["predictions"]
    rows = rows_of(data.users["user_id"], np.array([instance["user_id"] for instance in instances]))
    items = rows_of(data.items["movie_id"], np.array([instance["movie_id"] for instance in instances]))
    known = (rows >= 0) & (items >= 0)
    scores = np.array([prediction["score"] for prediction in predictions])
    expected = case["model"]({"user_id": tf.constant(rows[known]), "item_id": tf.constant(items[known])}).numpy()
    np.testing.assert_allclose(scores[known], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[~known], data.ratings["rating"].mean(), rtol=1e-6)

"""Both examples run with every optimizer and every embedding kind, write their metrics, learn,
resume from checkpoints, and write TensorBoard histograms."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from common import UserError
from example_runner import parse
from tf_freqsgd.data import load_movielens, train_val_test_split
from tf_freqsgd.layers import initial_embeddings_path
from tf_freqsgd.models.training import COUNTER_OPTIMIZERS, OPTIMIZERS

EXPECTED_METRICS = {
    "retrieval": {"recall@10", "recall@50", "recall@100", "ndcg@10", "mrr@100", "embedding parameters served"},
    "ranking": {"rmse", "auc", "embedding parameters served"},
}


def check_record(record, config, example):
    pep = {"pep_sparsity"} if config.embedding == "pep" else set()
    assert set(record["metrics"]) == EXPECTED_METRICS[example] | pep
    for name, value in record["metrics"].items():
        if name.startswith(("recall", "ndcg", "mrr", "auc")):
            assert 0.0 <= value <= 1.0, (name, value)
    if example == "ranking":
        assert 0.0 < record["metrics"]["rmse"] < 5.0
    with open(config.metrics_json) as file:
        assert json.load(file) == json.loads(json.dumps(record))
    assert record["config"]["optimizer"] == config.optimizer
    losses = record["history"]["loss"]
    assert len(losses) == config.epochs and all(math.isfinite(loss) for loss in losses)
    assert any(key.startswith("val_") for key in record["history"])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("example", ["retrieval", "ranking"])
def test_every_optimizer_runs(run_tiny, example, optimizer):
    record, _, config = run_tiny(example, f"--optimizer={optimizer}")
    check_record(record, config, example)
    if example == "retrieval":  # --logq=auto: from the counters where the optimizer keeps them
        assert record["config"]["logq"] == ("counter" if optimizer in COUNTER_OPTIMIZERS else "counts")
    # The table's rows: 943 users and 1,682 items of width 8.
    assert record["metrics"]["embedding parameters served"] == (943 + 1682) * 8


@pytest.mark.parametrize("args", [
    ("--embedding=dynamic", "--optimizer=adagrad"),  # a legacy optimizer wrapped for TFRA
    ("--embedding=dynamic", "--optimizer=frequency_sgd"),  # frequencies as (ids, values)
    ("--embedding=dynamic", "--optimizer=counter_sgd", "--logq=counter"),  # counters in hash tables
    ("--embedding=mlet", "--mlet_inner_dim=16", "--optimizer=frequency_sgd"),
    ("--embedding=pep", "--optimizer=rowwise_adagrad_counter", "--logq=counts"),
], ids=lambda args: "-".join(arg.split("=")[1] for arg in args))
def test_embedding_kinds_run(run_tiny, tmp_path, args):
    if "pep" in args[0]:
        args += (f"--pep_mask_dir={tmp_path / 'pep'}",)
    record, model, config = run_tiny("retrieval", *args)
    check_record(record, config, "retrieval")
    served = record["metrics"]["embedding parameters served"]
    if config.embedding == "dynamic":  # the users seen in training and the whole catalogue
        train = train_val_test_split(load_movielens(num_ratings=1500).ratings)[0]
        assert served == (len(np.unique(train["user_id"])) + 1682) * 8
    if config.embedding == "pep":  # the initial tables, kept for PEP's retrain phase
        for layer in (model.user_embedding, model.item_embedding):
            assert os.path.exists(initial_embeddings_path(tmp_path / "pep", layer.name))


def test_ranking_ctr_task(run_tiny):
    record, _, config = run_tiny("ranking", "--task=ctr", "--embedding=dynamic")
    assert set(record["metrics"]) == {"auc", "log_loss", "embedding parameters served"}
    assert record["metrics"]["log_loss"] > 0


def test_both_examples_learn(run_tiny):
    """A few epochs on 20,000 ratings: retrieval far above random recall (100/1682 = 0.06 at
    k = 100; 0.19 measured), ranking below the RMSE of always predicting the training mean."""
    record, _, _ = run_tiny("retrieval", "--num_ratings=20000", "--epochs=3", "--batch_size=512")
    assert record["metrics"]["recall@100"] > 0.15
    record, _, _ = run_tiny("ranking", "--num_ratings=20000", "--epochs=3", "--batch_size=128")
    train, _, test = train_val_test_split(load_movielens(num_ratings=20000).ratings)
    mean_rmse = float(np.sqrt(np.mean((test["rating"] - train["rating"].mean()) ** 2)))
    assert record["metrics"]["rmse"] < mean_rmse - 0.02


def trained_state(model):
    """Every model and optimizer variable by name (a resumed legacy optimizer creates its
    variables in another order)."""
    variables = list(model.variables) + list(model.optimizer.variables())
    state = {variable.name: variable.numpy() for variable in variables}
    assert len(state) == len(variables)
    return state


@pytest.mark.parametrize("optimizer", ["counter_sgd", "adagrad"])
def test_resumed_training_matches_uninterrupted(run_tiny, tmp_path, optimizer):
    """Two epochs straight, and one epoch then a rerun of the same command with --epochs=2,
    end with the same weights and optimizer state, bit for bit (fixed tables)."""
    common_args = (f"--optimizer={optimizer}", "--logq=counts")
    _, straight, _ = run_tiny("retrieval", *common_args, "--epochs=2", f"--checkpoint_dir={tmp_path / 'a'}")
    _, first, _ = run_tiny("retrieval", *common_args, "--epochs=1", f"--checkpoint_dir={tmp_path / 'b'}")
    record, resumed, _ = run_tiny("retrieval", *common_args, "--epochs=2", f"--checkpoint_dir={tmp_path / 'b'}")
    assert record["first_epoch_this_run"] == 1 and len(record["history"]["loss"]) == 1
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 2 * 10
    expected, actual = trained_state(straight), trained_state(resumed)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)
    # The same command once more: nothing left to train, the metrics of the saved model.
    again, _, _ = run_tiny("retrieval", *common_args, "--epochs=2", f"--checkpoint_dir={tmp_path / 'b'}")
    assert again["history"] == {} and again["metrics"] == record["metrics"]


def test_resuming_another_configuration_is_refused(run_tiny, tmp_path):
    run_tiny("retrieval", "--optimizer=sgd", "--learning_rate=0.1", f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserError, match=r"another configuration \(--optimizer: 'sgd' -> 'adam'\)"):
        run_tiny("retrieval", "--optimizer=adam", "--learning_rate=0.1", "--epochs=2", f"--checkpoint_dir={tmp_path}")


def histograms(event_dir):
    """{tag: [(step, total count)]} of the histogram summaries in ``event_dir``."""
    found = {}
    for path in sorted(event_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                buckets = tf.make_ndarray(value.tensor)  # [left, right, count] rows
                found.setdefault(value.tag, []).append((event.step, int(buckets[:, 2].sum())))
    return found


@pytest.mark.parametrize("optimizer", ["counter_sgd", "adam"])
def test_tensorboard_histograms_of_counters_and_rates(run_tiny, tmp_path, optimizer):
    run_tiny("retrieval", f"--optimizer={optimizer}", "--epochs=2", f"--tensorboard_dir={tmp_path}")
    found = histograms(tmp_path / "row_state")
    train = train_val_test_split(load_movielens(num_ratings=1500).ratings)[0]
    if optimizer == "counter_sgd":  # counted rows only: those seen in training
        rows = {"user": len(np.unique(train["user_id"])), "item": len(np.unique(train["item_id"]))}
        expected_tags = {f"{kind}/{table}" for kind in ("counters", "learning_rate") for table in rows}
    else:  # every row
        rows = {"user": 943, "item": 1682}
        expected_tags = {"learning_rate/user", "learning_rate/item"}
    assert set(found) == expected_tags
    for tag, points in found.items():
        assert points == [(1, rows[tag.split("/")[1]]), (2, rows[tag.split("/")[1]])]
    assert list(tmp_path.glob("train/events.out.tfevents.*"))  # Keras' own scalars


@pytest.mark.parametrize("optimizer", ["sgd", "counter_sgd"])
def test_divergence_is_reported_with_the_rate(run_tiny, optimizer):
    """Legacy SGD's loss turns NaN; tf_freqsgd's optimizers refuse the non-finite gradient, naming
    the variable."""
    what = (r"the loss of batch \d+ is nan" if optimizer == "sgd"
            else "CounterSGD: gradient for variable '.*' has a non-finite value")
    with pytest.raises(UserError, match=rf"Training diverged: {optimizer} at --learning_rate=1e\+06 met a "
                                        rf"non-finite loss or gradient \({what}.*\)\. Lower --learning_rate"):
        run_tiny("retrieval", f"--optimizer={optimizer}", "--learning_rate=1e6")

"""The examples' flags: defaults, clear errors for bad values, and the help text."""

import pytest
from absl import app, flags

from common import UserError
from example_runner import EXAMPLES, flag_values, parse, run_example
from tf_freqsgd.models.training import OPTIMIZER_DESCRIPTIONS, OPTIMIZERS


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_defaults_and_the_optimizers_learning_rate(example):
    config = parse(example)
    assert (config.dataset, config.optimizer, config.embedding, config.embedding_dim) == (
        "synthetic", "counter_sgd", "table", 32)
    for optimizer in OPTIMIZERS:
        assert parse(example, f"--optimizer={optimizer}").learning_rate == EXAMPLES[example].LEARNING_RATES[optimizer]
    assert parse(example, "--optimizer=adam", "--learning_rate=0.3").learning_rate == 0.3


@pytest.mark.parametrize("args, message", [
    (["--optimizer=rmsprop"], r"--optimizer=rmsprop: value should be one of <sgd\|adagrad\|adam\|counter_sgd"),
    (["--embedding=hashed"], r"--embedding=hashed: value should be one of <table\|dynamic\|mlet\|pep>"),
    (["--dataset=ml-5k"], r"--dataset=ml-5k: value should be one of <synthetic"),
    (["--epochs=0"], r"--epochs=0: 0 is not a positive integer"),
    (["--batch_size=-8"], r"--batch_size=-8: -8 is not a positive integer"),
    (["--learning_rate=-0.1"], r"--learning_rate must be > 0"),
    (["--learning_rate=fast"], r"--learning_rate=fast: could not convert string to float"),
    (["--pep_target_sparsity=1.5"], r"--pep_target_sparsity must be in \(0, 1\)"),
    (["--logq=counter", "--optimizer=adagrad"],
     r"--logq=counter needs an optimizer that keeps counters \(counter_sgd, counter_sgd_adam, rowwise_adagrad_counter\)"),
    (["--logq=sampled"], r"--logq=sampled: value should be one of <auto\|none\|counter\|counts>"),
])
def test_bad_flag_values_are_named(args, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        parse("retrieval", *args)


def test_ranking_task_is_checked():
    with pytest.raises(flags.IllegalFlagValueError, match=r"--task=clicks: value should be one of <rating\|ctr>"):
        parse("ranking", "--task=clicks")


@pytest.mark.parametrize("args, message", [
    (["--mlet_inner_dim=16"], r"--mlet_inner_dim applies to --embedding=mlet only \(got --embedding=table\)"),
    (["--embedding=mlet", "--pep_target_sparsity=0.3"], r"--pep_target_sparsity applies to --embedding=pep only"),
])
def test_flags_of_another_embedding_kind_are_refused(args, message):
    with pytest.raises(app.UsageError, match=message):
        parse("ranking", *args)


def test_missing_data_dir_is_named(tmp_path):
    config = parse("retrieval", "--dataset=ml-100k", f"--data_dir={tmp_path / 'absent'}")
    with pytest.raises(UserError, match="absent' is not a directory"):
        EXAMPLES["retrieval"].run(config)


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_help_describes_every_choice(example):
    text = flag_values(example).get_help()
    for optimizer in OPTIMIZERS:
        assert f"{optimizer}: {OPTIMIZER_DESCRIPTIONS[optimizer]}"[:40] in " ".join(text.split())
    for phrase in ("legacy SGD", "--embedding", "dynamic (TFRA", "--checkpoint_dir", "resumes",
                   "--tensorboard_dir", "--export_dir", "--metrics_json", "--seed"):
        assert phrase in text, phrase
    assert ("--logq" in text) == (example == "retrieval") and ("--task" in text) == (example == "ranking")


def test_command_line_errors_and_helpfull():
    completed = run_example("retrieval", "--optimizer=rmsprop")
    assert completed.returncode == 2
    assert completed.stderr.startswith("movielens_retrieval.py: error: flag --optimizer=rmsprop: value should be one "
                                       "of") and completed.stderr.count("\n") == 1
    completed = run_example("retrieval", "--helpfull")  # absl exits with status 1 after the help
    assert "Try --helpfull" not in completed.stdout
    assert "--logq" in completed.stdout and "--optimizer" in completed.stdout

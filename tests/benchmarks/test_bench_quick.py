"""Smoke tests of the benchmark scripts at tiny sizes, each script in its own process as `make bench` runs it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = os.path.join(HERE, "..", "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_flags  # noqa: E402

DIM = 16


def run_script(name, *args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, name), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quality_quick(tmp_path_factory):
    """quality.py at its quick sizes on 3,000 synthetic ratings: 1 seed, 1 learning rate, 1 epoch."""
    output_dir = tmp_path_factory.mktemp("quality")
    result = run_script("quality.py", "--quick", "--synthetic_ratings=3000", f"--dim={DIM}",
                        "--optimizers=sgd,adagrad,counter_sgd,counter_sgd_cowclip,frequency_sgd",
                        f"--output_dir={output_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output_dir / "quality.json") as f:
        return output_dir, json.load(f)


def test_quality_measures_every_task_and_optimizer_with_one_grid_size(quality_quick):
    output_dir, results = quality_quick
    tasks = results["datasets"]["synthetic"]["tasks"]
    assert list(tasks) == ["rating", "ctr", "ctr_mf", "ctr_big_batch", "ctr_mf_big_batch", "retrieval",
                           "retrieval_logq", "retrieval_tfrs", "retrieval_tfrs_logq"]
    assert [task["logq"] for task in tasks.values()] == [False] * 6 + [True, False, True]
    assert tasks["ctr_big_batch"]["batch_size"] == tasks["ctr_mf_big_batch"]["batch_size"] == 8192
    assert list(tasks["ctr_mf_big_batch"]["optimizers"]) == ["counter_sgd", "counter_sgd_cowclip"]
    assert list(tasks["retrieval_tfrs"]["optimizers"]) == ["sgd", "adagrad", "counter_sgd"]
    assert tasks["retrieval_tfrs"]["batch_size"] == 8192 and tasks["retrieval"]["batch_size"] == 1024
    for task in tasks.values():
        assert {len(r["grid"]) for r in task["optimizers"].values()} == {1}
        for name, result in task["optimizers"].items():
            assert result["test"]["n"] == 1, name
            low, high = (0.5, 3.5) if task["metric"] == "rmse" else (0.0, 1.0)  # untrained: RMSE ~3.7
            assert low < result["test"]["mean"] < high, (task["metric"], name)
            assert result["curves"][0][0][0] == 0 and result["curves"][0][-1][0] == task["steps_per_epoch"]
        shares = [task["buckets"][b]["train_share"] for b in ("head", "torso", "tail")]
        assert shares[0] >= 0.5 and sum(shares[:2]) >= 0.8 and sum(shares) == pytest.approx(1.0)
    for plot in ("curves", "buckets", "rates"):
        assert (output_dir / f"quality_{plot}_synthetic.png").exists()


def test_quality_records_each_optimizers_rate_range_and_default_rate(quality_quick):
    _, results = quality_quick
    for task in results["datasets"]["synthetic"]["tasks"].values():
        for name, result in task["optimizers"].items():
            assert result["robust_rates"] == result["grid"] * 2 and result["robust_span"] == 1.0, name
        assert task["optimizers"]["counter_sgd"]["default_learning_rate"] == 0.1
    assert results["datasets"]["synthetic"]["tasks"]["ctr"]["optimizers"]["sgd"]["default_learning_rate"] == 0.01


def test_rate_robustness_is_the_widest_run_within_5_percent_of_the_best():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import quality;"
            "task = type('T', (), {'higher_is_better': True});"
            "grid = [0.01, 0.0215, 0.0464, 0.1, 0.215, 0.464, 1.0];"
            "print(quality.rate_robustness(task, grid, [0.5, 0.96, 0.97, 1.0, 0.99, 0.9, None], 'counter_sgd'));"
            "task.higher_is_better = False;"
            "print(quality.rate_robustness(task, grid, [2.0, 1.0, 1.06, 1.04, 1.02, 3.0, None], 'sgd'))")
    result = subprocess.run([sys.executable, "-c", code, BENCHMARKS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    high, low = [eval(line) for line in result.stdout.strip().splitlines()[-2:]]
    assert high == {"robust_rates": [0.0215, 0.215], "robust_span": 0.215 / 0.0215, "default_learning_rate": 0.1,
                    "default_in_range": True}
    assert low["robust_rates"] == [0.1, 0.215] and low["default_in_range"] is False


def test_quality_update_keeps_the_results_it_does_not_measure(quality_quick, tmp_path):
    output_dir, results = quality_quick
    shutil.copy(output_dir / "quality.json", tmp_path / "quality.json")
    result = run_script("quality.py", "--quick", "--synthetic_ratings=3000", f"--dim={DIM}", "--tasks=ctr_mf",
                        "--optimizers=sgd", "--grid_points=2", "--update", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "quality.json") as f:
        updated = json.load(f)["datasets"]["synthetic"]["tasks"]
    before = results["datasets"]["synthetic"]["tasks"]
    assert list(updated) == list(before) and updated["rating"] == before["rating"]
    assert list(updated["ctr_mf"]["optimizers"]) == list(before["ctr_mf"]["optimizers"])
    assert len(updated["ctr_mf"]["optimizers"]["sgd"]["grid"]) == 2  # measured again
    assert updated["ctr_mf"]["optimizers"]["counter_sgd"] == before["ctr_mf"]["optimizers"]["counter_sgd"]


def test_quality_memory_is_measured_from_the_optimizers_variables(quality_quick):
    _, results = quality_quick
    per_row = {name: r["state_bytes_per_item_row"]
               for name, r in results["datasets"]["synthetic"]["tasks"]["retrieval"]["optimizers"].items()}
    assert per_row == {"sgd": 0, "adagrad": 4 * DIM, "counter_sgd": 4, "frequency_sgd": 4}
    assert [name for name, task in results["datasets"]["synthetic"]["tasks"].items()
            if "counter_sgd_cowclip" in task["optimizers"]] == ["ctr_mf", "ctr_mf_big_batch"]


def test_the_results_generator_reads_the_quality_json(quality_quick):
    output_dir, _ = quality_quick
    import test_readme_results

    text = test_readme_results.generator.render(str(output_dir), str(output_dir))
    assert "| CounterSGD |" in text and "### Rare ids" in text
    assert "| CounterSGD + CowClip |" in text  # measured on CTR-MF only, not on the first task
    assert "### Learning-rate robustness" in text
    assert "CounterSGD is within 5% of its best over 10× on 0 of 9 tasks" in text
    assert "### Big batches: CowClip" in text and "| synthetic-100k-n3000 | MF: CounterSGD |" in text
    assert "Retrieval target" in text and "the best at ≤ 8 B/row is CounterSGD" in text


def test_frequency_buckets_split_training_interactions_at_50_and_80_percent():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import quality;"
            "buckets, summary = quality.frequency_buckets([0] * 5 + [1] * 3 + [2, 3], 5);"
            "print(buckets.tolist(), [summary[b]['items'] for b in quality.BUCKETS])")
    result = subprocess.run([sys.executable, "-c", code, BENCHMARKS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # Item 0 holds 50% (head); item 1 the next 30% (torso); items 2, 3 and the unseen 4 the rest.
    assert result.stdout.split("\n")[-2] == "[0, 1, 2, 2, 2] [1, 1, 3]"


def test_cluster_meters_every_run_on_local_clusters(tmp_path):
    """cluster.py at a tiny size: both strategies' clusters start, train every optimizer and are
    metered; CounterSGD's traffic is within 8 B per touched row of SGD's under both (the same
    gathered gradient under MultiWorkerMirroredStrategy; rows summed on the worker, with their
    occurrences, under ParameterServerStrategy)."""
    result = run_script("cluster.py", "--quick", "--rows=20000", "--steps_per_epoch=3", "--timed_epochs=2",
                        f"--output_dir={tmp_path}", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "cluster.json") as f:
        results = json.load(f)
    runs = {(run["strategy"], run["label"]): run for run in results["runs"]}
    assert len(runs) == 8
    occurrences = results["settings"]["occurrences_per_step"]
    for run in runs.values():
        assert run["steps"] == 6 and run["steps_per_second"] > 0 and run["bytes_per_step"] > 0
        assert 0 < run["touched_rows_per_step"] < occurrences
        assert run["table_shards"] == (2 if run["strategy"] == "parameter_server" else 1)
    for key in (("multi_worker", "CounterSGD, fused op"), ("parameter_server", "CounterSGD (pure TF, summed on the worker)")):
        assert abs(runs[key]["bytes_over_sgd_per_touched_row"]) <= results["bound_bytes_per_touched_row"], key
    assert (tmp_path / "cluster.png").exists()


def test_examples_runs_the_programs_as_a_user_does_and_keeps_the_quickstarts_output(tmp_path):
    """examples.py at its quick sizes, two runs at once: a ranking command, given --metrics_json, and
    README's quickstart command (retrieval with nothing else), whose output is kept and rendered."""
    output = tmp_path / "examples.json"
    result = run_script("examples.py", "--quick", "--groups=optimizers,quickstart", "--optimizers=counter_sgd",
                        "--tasks=ctr", f"--output_json={output}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    examples = json.loads(output.read_text())
    assert examples["settings"]["quick"] and examples["settings"]["datasets"] == ["synthetic"]
    ranking, quickstart = examples["runs"]
    assert ranking["command"] == "examples/movielens_ranking.py --task=ctr --num_ratings=3000 --epochs=1"
    assert ranking["groups"] == ["optimizers"] and ranking["status"] == "ok" and "stdout" not in ranking
    assert ranking["config"]["task"] == "ctr" and 0 < ranking["metrics"]["auc"] < 1
    assert quickstart["command"] == "examples/movielens_retrieval.py --num_ratings=3000 --epochs=1"
    assert quickstart["config"]["logq"] == "counter" and 0 <= quickstart["metrics"]["recall@100"] <= 1
    # Written to the run's own temporary directory, shown as the default path a user sees.
    assert f"Metrics written to {tempfile.gettempdir()}/movielens_retrieval_metrics.json" in quickstart["stdout"]
    import test_readme_results

    block = "\n".join(test_readme_results.generator.quickstart_block(examples))
    assert block.startswith("```\nData: synthetic (synthetic-100k-n3000, generated;") and "\n...\n" in block
    assert f"| test recall@100 | {quickstart['metrics']['recall@100']:.4f} |" in block


def test_examples_names_a_bad_group():
    result = run_script("examples.py", "--groups=optimizers,bogus", timeout=60)
    assert result.returncode != 0 and "--groups: unknown ['bogus']" in result.stderr


@pytest.mark.parametrize("script, args, message", [
    ("quality.py", ["--tasks=rating,bogus"], "unknown task 'bogus'"),
    ("quality.py", ["--optimizers=lamb"], "unknown optimizer 'lamb'"),
    ("first_step.py", ["--repeats=0"], "--repeats must be at least 1"),
    ("run_all.py", ["--only=quality,speed"], "Unknown benchmark(s) ['speed']"),
])
def test_bad_flags_are_named(script, args, message):
    result = run_script(script, *args, "--output_dir=/nonexistent/not-written")
    assert result.returncode != 0
    assert message in result.stderr


def test_apply_quick_keeps_flags_given_on_the_command_line():
    flag_values = flags.FlagValues()
    flags.DEFINE_bool("quick", False, "", flag_values=flag_values)
    flags.DEFINE_integer("seeds", 3, "", flag_values=flag_values)
    flags.DEFINE_integer("epochs", 5, "", flag_values=flag_values)
    flag_values(["script", "--quick", "--seeds=2"])
    bench_flags.apply_quick({"seeds": 1, "epochs": 1}, flag_values)
    assert (flag_values.seeds, flag_values.epochs) == (2, 1)
    with pytest.raises(ValueError, match=r"no flags named \['epoch'\]"):
        bench_flags.apply_quick({"epoch": 1}, flag_values)


def test_run_all_runs_a_script_and_regenerates_the_benchmarks_doc(tmp_path):
    import test_readme_results

    readme = tmp_path / "benchmarks.md"
    readme.write_text(test_readme_results.README)
    result = run_script("run_all.py", "--quick", "--only=state_memory", f"--output_dir={tmp_path}",
                        f"--logs_dir={tmp_path / 'logs'}", f"--readme={readme}")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run_all.json") as f:
        run = json.load(f)
    assert run["mode"] == "quick" and run["benchmarks"]["state_memory"]["status"] == "ok"
    assert (tmp_path / "logs" / "state_memory.log").exists()
    text = readme.read_text()
    assert "### Optimizer-state memory" in text and "**Quick run**" in text and "old text" not in text


def test_a_quick_run_regenerates_a_copy_of_the_benchmarks_doc_beside_its_results(tmp_path):
    result = run_script("run_all.py", "--quick", "--only=state_memory", f"--output_dir={tmp_path}",
                        f"--logs_dir={tmp_path / 'logs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "benchmarks.md").read_text()
    assert "**Quick run**" in text and "### Optimizer-state memory" in text
    # README's copy, whose quickstart output stays as it is without the examples' results.
    assert "<!-- quickstart:begin -->" in (tmp_path / "README.md").read_text()

"""The benchmark-results generator (default target docs/benchmarks.md): only the marked section
changes, and every figure comes from the JSON.

The fixture JSON in `fixtures/` is the output of one `make bench-quick` (curves trimmed); examples.json
that of `benchmarks/examples.py --quick --seeds=0,1`."""

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
SCRIPT = os.path.join(HERE, "..", "..", "benchmarks", "readme_results.py")


def load_generator():
    spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = load_generator()

README = """# Title

Text before, kept as it is.

## Benchmarks

{begin}
old text, replaced
{end}

Text after, kept as it is.
""".format(begin=generator.BEGIN, end=generator.END)


def fixture(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        return json.load(f)


def rendered():
    return generator.render(FIXTURES, HERE)


def test_only_the_marked_section_changes():
    updated = generator.replace_section(README, "new section")
    before, after = README.split(generator.BEGIN), updated.split(generator.BEGIN)
    assert after[0] == before[0]
    assert after[1].split(generator.END)[1] == before[1].split(generator.END)[1]
    assert f"{generator.BEGIN}\nnew section\n{generator.END}" in updated
    assert generator.replace_section(updated, "new section") == updated


@pytest.mark.parametrize("text, problem", [
    ("# no markers\n", "found 0 and 0"),
    (README + generator.BEGIN + "\n", "found 2 and 1"),
    (f"{generator.END}\n{generator.BEGIN}\n", "comes before"),
])
def test_bad_markers_are_named(text, problem):
    with pytest.raises(generator.MarkerError, match=problem):
        generator.replace_section(text, "section")


def test_quality_table_holds_each_optimizers_figures():
    quality = fixture("quality")
    text = rendered()
    for entry in quality["datasets"].values():
        for task in entry["tasks"].values():
            for result in task["optimizers"].values():
                figure = f"{result['test']['mean']:.4f} ± {result['test']['std']:.4f}"
                assert figure in text
                assert f"{result['label']} |" in text


def test_plots_are_linked_relative_to_the_target_when_present(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    shutil.copytree(FIXTURES, results)
    assert "quality_curves_synthetic.png" not in generator.render(str(results), str(tmp_path / "docs"))
    (results / "quality_curves_synthetic.png").write_bytes(b"")
    text = generator.render(str(results), str(tmp_path / "docs"))
    assert "](../benchmarks/results/quality_curves_synthetic.png)" in text
    assert "JSON files in `../benchmarks/results/`" in text
    assert "](benchmarks/results/quality_curves_synthetic.png)" in generator.render(str(results), str(tmp_path))


def test_rare_id_rows_per_bucket_and_memory_from_the_variables():
    text = rendered()
    ctr = fixture("quality")["datasets"]["synthetic"]["tasks"]["ctr"]
    for bucket in ("head", "torso", "tail"):
        assert f"| {generator.TASK_LABELS['ctr']} | {bucket}: {ctr['buckets'][bucket]['items']:,} (" in text
    counter = ctr["optimizers"]["counter_sgd"]
    assert f"{counter['state_bytes']:,} B | {counter['state_bytes_per_item_row']:g} B" in text
    assert "(1/64): it meets the ≤ 1/32 target" in text


def test_speed_sections_and_run_header():
    text = rendered()
    step_time, first_step, run = fixture("step_time"), fixture("first_step"), fixture("run_all")
    spec = next(iter(step_time["results"]))
    assert f"| CounterSGD, fused op | {step_time['results'][spec]['CounterSGD, fused op']['step_ms']:,.2f} |" in text
    excluded = first_step["results"]["excluded"]
    assert f"| {excluded['label']} | {excluded['median_import_seconds']:.1f} |" in text
    assert "**Quick run**" in text and f"`{run['benchmarks']['quality']['commit']}`" in text
    assert "| CounterSGD | 4 | " in text  # dynamic_scale: state bytes a row, labelled by its JSON


def test_cluster_section_shows_each_run_and_the_traffic_bound():
    text = rendered()
    cluster = fixture("cluster")
    assert "### Cluster traffic and step rate" in text and cluster["method"] in text and cluster["caveat"] in text
    assert all(f"* {note}" in text for note in cluster["notes"])
    for run in cluster["runs"]:
        assert (f"| {cluster['settings']['strategies'][run['strategy']]} | {run['label']} | "
                f"{run['steps_per_second']:.1f} | {run['bytes_per_step'] / 1024:,.1f} |") in text
    # The fixture's CounterSGD sends its gradient by occurrence under PS (+87 B per touched row over
    # SGD), and as much as SGD under MultiWorkerMirroredStrategy.
    assert "CounterSGD, fused op (TF_FREQSGD_OPS=custom) +87.2 B per touched row (misses the bound)" in text
    assert "CounterSGD, fused op +0.0 B per touched row (meets the bound)" in text
    assert "beside it Adagrad (tf_keras) +0.0 B" in text
    assert "= 87.0 B per touched row." in text


def test_verdicts_compare_means_within_two_standard_errors():
    a = {"mean": 0.80, "std": 0.01, "n": 3}
    assert generator.compare(a, {"mean": 0.79, "std": 0.01, "n": 3})[0] == "within noise of"
    assert generator.compare(a, {"mean": 0.70, "std": 0.01, "n": 3})[0] == "better than"
    assert generator.compare(a, {"mean": 0.70, "std": 0.01, "n": 3}, higher_is_better=False)[0] == "worse than"


def test_missing_results_are_listed(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "state_memory.json"), tmp_path)
    text = generator.render(str(tmp_path), str(tmp_path))
    assert "### Optimizer-state memory" in text
    assert ("No results yet for: quality, learning-rate robustness, big batches, rare ids, step time, Keras 3 step time, first step, TFRA at scale, "
            "training on a cluster, embedding size, choice of defaults, MovieLens examples.") in text


def example_runs(group, **fields):
    return [record for record in fixture("examples")["runs"] if group in record["groups"]
            and all(record["run"][key] == value for key, value in fields.items())]


def test_examples_section_shows_each_runs_command_and_figures():
    section = rendered().split("### MovieLens examples")[1]
    default_run = example_runs("optimizers", optimizer="counter_sgd", task="ctr")[0]
    assert (f"| `{default_run['command']}` | 0.3 | auc {default_run['metrics']['auc']:.4f}, log_loss "
            f"{default_run['metrics']['log_loss']:.4f} | {default_run['train_seconds']:.1f} |") in section
    for record in example_runs("optimizers", task=None):  # retrieval, one data set in the fixture
        recall = record["metrics"]
        assert (f"| {record['run']['optimizer']} | {record['config']['learning_rate']:g} | {recall['recall@10']:.4f} "
                f"| {recall['recall@100']:.4f} |") in section
    for record in example_runs("embeddings") + example_runs("exclude_rated"):
        first_metric = next(iter(record["metrics"]))
        assert (f"| `{record['command']}` | {record['config']['learning_rate']:g} | {first_metric} "
                f"{record['metrics'][first_metric]:.4f}, ") in section
    assert "`examples/movielens_retrieval.py --embedding=mlet --learning_rate=0.005" in section


def test_examples_logq_rows_are_the_seeds_mean_and_sample_std():
    section = rendered().split("#### Log-Q correction from the counters")[1]
    for optimizer, corrections in fixture("examples")["settings"]["logq_corrections"].items():
        for logq in corrections:
            recalls = [record["metrics"]["recall@100"]
                       for record in example_runs("logq", optimizer=optimizer, logq=logq)]
            if recalls:
                assert len(recalls) == 2
                stats = f"{statistics.mean(recalls):.4f} ± {statistics.stdev(recalls):.4f}"
                assert f"| synthetic | {optimizer} | {logq} | " in section and stats in section
    assert "* synthetic, counter_sgd: recall@100 with the counters' estimate is" in section


def test_quickstart_output_is_the_runs_own_between_its_markers(tmp_path):
    quickstart = example_runs("quickstart")[0]
    block = generator.quickstart_block(fixture("examples"))
    assert block[:3] == ["```", quickstart["stdout"].split("\n")[0], "..."]
    assert block[3].startswith("movielens_retrieval on ") and "| test recall@10 |" in "\n".join(block)
    assert block[-4:-2] == ["```", ""] and block[-2] == f"Printed by `{quickstart['command']}`"
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{generator.QUICKSTART_BEGIN}\nold output\n{generator.QUICKSTART_END}\nafter\n")
    command = [sys.executable, SCRIPT, f"--results_dir={FIXTURES}", f"--readme={tmp_path / 'benchmarks.md'}",
               f"--quickstart_readme={readme}"]
    (tmp_path / "benchmarks.md").write_text(README)
    stale = subprocess.run(command + ["--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "quickstart output differs" in stale.stderr
    assert subprocess.run(command, capture_output=True, text=True, timeout=60).returncode == 0
    text = readme.read_text()
    assert "old output" not in text and "\n".join(block) in text
    assert text.endswith(f"{generator.QUICKSTART_END}\nafter\n")
    assert subprocess.run(command + ["--check"], capture_output=True, text=True, timeout=60).returncode == 0


def test_check_mode_reports_a_stale_section(tmp_path):
    readme = tmp_path / "benchmarks.md"
    readme.write_text(README)
    command = [sys.executable, SCRIPT, f"--results_dir={FIXTURES}", f"--readme={readme}"]
    stale = subprocess.run(command + ["--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "differs" in stale.stderr
    assert readme.read_text() == README
    assert subprocess.run(command, capture_output=True, text=True, timeout=60).returncode == 0
    assert "old text" not in readme.read_text()
    assert subprocess.run(command + ["--check"], capture_output=True, text=True, timeout=60).returncode == 0


def test_the_default_target_is_docs_benchmarks_md_with_one_pair_of_markers():
    target = os.path.normpath(generator.BENCHMARKS_DOC)
    assert target == os.path.normpath(os.path.join(HERE, "..", "..", "docs", "benchmarks.md"))
    with open(target, encoding="utf-8") as f:
        text = f.read()
    generator.replace_section(text, "section")  # raises MarkerError unless the markers are there once
    assert os.path.normpath(generator.README) == os.path.normpath(os.path.join(HERE, "..", "..", "README.md"))
    with open(generator.README, encoding="utf-8") as f:
        readme = f.read()
    assert generator.BEGIN not in readme
    generator.replace_section(readme, "output", generator.QUICKSTART_BEGIN, generator.QUICKSTART_END)


def test_the_committed_benchmarks_doc_is_what_the_committed_results_give():
    """docs/benchmarks.md's results section, and README.md's quickstart output, are generated from
    benchmarks/results/*.json, never hand-edited."""
    completed = subprocess.run([sys.executable, SCRIPT, "--check"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr

"""The MovieLens examples run as a user runs them: every figure of docs/benchmarks.md's "MovieLens
examples" section and README's quickstart output, measured rather than copied.

Run: `make bench-examples` (`.venv/bin/python benchmarks/examples.py`; 77 runs, 22 minutes here on 2
shared cores; `--quick`: synthetic data only, 3,000 ratings, 1 epoch, two optimizers, 2 minutes).
Writes `benchmarks/results/examples.json`; `benchmarks/readme_results.py` renders it.

Each run is a process `python examples/movielens_{retrieval,ranking}.py FLAGS --metrics_json=FILE`
started from the repository root, `--parallel` at a time, each with a temporary directory of its own
(TMPDIR); its figures are read from the metrics JSON it writes. The runs, by group (`--groups`):

* optimizers: every optimizer of the examples (`--optimizers`) at its default rate, on each data set
  (`--datasets`: the built-in synthetic set, MovieLens 100K read from `--data_dir`), for retrieval,
  ranking `--task=rating` and `--task=ctr` (`--tasks`);
* logq: retrieval with each log-Q correction of `LOGQ_CORRECTIONS`, at each seed of `--seeds`, on
  each data set;
* embeddings: counter_sgd with each embedding kind of `EMBEDDING_KINDS` (retrieval and rating, those
  of `--tasks`), on the reference data set (MovieLens 100K, else the first of `--datasets`);
* exclude_rated: retrieval with `--exclude_rated`, on the reference data set;
* quickstart: README's quickstart command, `examples/movielens_retrieval.py --data_dir=<data_dir
  relative to the repository>` with nothing else (nor `--metrics_json`: its metrics are read where
  the example writes them by default), its standard output kept, the temporary directory in it
  shown as the system's.

Flags at their example's defaults are left out of a command (counter_sgd, --task=rating, seed 0,
the log-Q correction that --logq=auto picks), so one command serves every group that needs it (the
quickstart is also counter_sgd's retrieval on MovieLens 100K) and runs once. `--num_ratings` and
`--epochs`, when set, are added to every command. A run that fails is recorded with its exit status
and the end of its error output; the others go on, and the script then exits with status 1.
"""

import concurrent.futures
import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import bench_flags  # noqa: E402  (beside this script)

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCHMARKS_DIR)
EXAMPLES_DIR = os.path.join(REPO_DIR, "examples")
RESULTS_DIR = os.path.join(BENCHMARKS_DIR, "results")
sys.path.insert(0, EXAMPLES_DIR)

import common  # noqa: E402  (examples/common.py: the examples' choices, without importing TensorFlow)

SCRIPTS = {"retrieval": "examples/movielens_retrieval.py", "ranking": "examples/movielens_ranking.py"}
DATASETS = ("synthetic", "ml-100k")
TASKS = ("retrieval", "rating", "ctr")  # retrieval, and the ranking example's --task
GROUPS = ("optimizers", "logq", "embeddings", "exclude_rated", "quickstart")
DEFAULT_OPTIMIZER = "counter_sgd"
# The log-Q table: per optimizer, the corrections compared (counter needs an optimizer's counters).
LOGQ_CORRECTIONS = {"counter_sgd": ("none", "counter", "counts"), "rowwise_adagrad_counter": ("none", "counter"),
                    "sgd": ("none", "counts"), "adagrad": ("none", "counts")}
# Per embedding kind and task, the rate when the optimizer's default does not train: MLET's dense
# projection takes every batch's summed gradient, and retrieval at counter_sgd's 0.02 diverges.
EMBEDDING_KINDS = {"dynamic": {}, "mlet": {"retrieval": 0.005}, "pep": {}}
# What each run's record keeps of the configuration its metrics JSON holds (paths left out).
CONFIG_KEYS = {"retrieval": ("optimizer", "learning_rate", "embedding", "embedding_dim", "epochs", "batch_size",
                             "seed", "logq", "exclude_rated"),
               "ranking": ("optimizer", "learning_rate", "embedding", "embedding_dim", "epochs", "batch_size",
                           "seed", "task")}

flags.DEFINE_string("data_dir", bench_flags.ML100K_DIR, "MovieLens 100K's directory (u.data, u.item).")
flags.DEFINE_list("datasets", list(DATASETS), f"Data sets, of {DATASETS}.")
flags.DEFINE_list("optimizers", list(common.choices.OPTIMIZERS), "Optimizers measured, of the examples' --optimizer.")
flags.DEFINE_list("tasks", list(TASKS), f"Tasks of the optimizers and embeddings groups, of {TASKS}.")
flags.DEFINE_list("groups", list(GROUPS), f"Groups of runs, of {GROUPS}.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds of the logq group.")
flags.DEFINE_integer("num_ratings", None, "Added to every command as --num_ratings (default: the whole data set).")
flags.DEFINE_integer("epochs", None, "Added to every command as --epochs (default: the example's).")
flags.DEFINE_integer("parallel", 2, "Runs at a time.", lower_bound=1)
flags.DEFINE_integer("run_timeout", 1800, "Seconds a run may take.", lower_bound=1)
flags.DEFINE_string("output_json", os.path.join(RESULTS_DIR, "examples.json"), "Where the results go.")
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Run:
    """One command of an example: `example` (retrieval or ranking), `dataset` (of DATASETS) and the
    flags that differ from the example's defaults. `logq` is the correction applied (retrieval), as
    --logq=auto resolves it when not given; `learning_rate` None: the optimizer's default."""

    example: str
    dataset: str
    optimizer: str = DEFAULT_OPTIMIZER
    task: str = None
    logq: str = None
    seed: int = 0
    embedding: str = "table"
    learning_rate: float = None
    exclude_rated: bool = False

    @staticmethod
    def of(task, dataset, **fields):
        """The run of `task` (of TASKS) on `dataset`, log-Q at --logq=auto's choice unless given."""
        if task != "retrieval":
            return Run("ranking", dataset, task=task, **fields)
        fields.setdefault("logq", auto_logq(fields.get("optimizer", DEFAULT_OPTIMIZER)))
        return Run("retrieval", dataset, **fields)

    def arguments(self, data_dir):
        """The command-line flags, those at the example's defaults left out."""
        given = [f"--data_dir={data_dir}"] if self.dataset == "ml-100k" else []
        given += [f"--optimizer={self.optimizer}"] if self.optimizer != DEFAULT_OPTIMIZER else []
        given += [f"--task={self.task}"] if self.task not in (None, "rating") else []
        given += [f"--logq={self.logq}"] if self.logq not in (None, auto_logq(self.optimizer)) else []
        given += [f"--embedding={self.embedding}"] if self.embedding != "table" else []
        given += [f"--learning_rate={self.learning_rate:g}"] if self.learning_rate is not None else []
        given += ["--exclude_rated"] if self.exclude_rated else []
        given += [f"--seed={self.seed}"] if self.seed else []
        given += [f"--num_ratings={FLAGS.num_ratings}"] if FLAGS.num_ratings else []
        return given + ([f"--epochs={FLAGS.epochs}"] if FLAGS.epochs else [])


def auto_logq(optimizer):
    """The correction the retrieval example's --logq=auto picks for `optimizer`."""
    return "counter" if optimizer in common.choices.COUNTER_OPTIMIZERS else "counts"


def planned_runs(datasets, reference):
    """{Run: the groups needing it}, in the order the groups list them."""
    runs = {}

    def add(group, run):
        runs.setdefault(run, []).append(group)

    groups = set(FLAGS.groups)
    if "optimizers" in groups:
        for task in FLAGS.tasks:
            for dataset in datasets:
                for optimizer in FLAGS.optimizers:
                    add("optimizers", Run.of(task, dataset, optimizer=optimizer))
    if "logq" in groups:
        for dataset in datasets:
            for optimizer, corrections in LOGQ_CORRECTIONS.items():
                for logq in corrections if optimizer in FLAGS.optimizers else ():
                    for seed in map(int, FLAGS.seeds):
                        add("logq", Run.of("retrieval", dataset, optimizer=optimizer, logq=logq, seed=seed))
    if "embeddings" in groups:
        for kind, rates in EMBEDDING_KINDS.items():
            for task in ("retrieval", "rating"):
                if task in FLAGS.tasks:
                    add("embeddings", Run.of(task, reference, embedding=kind, learning_rate=rates.get(task)))
    if "exclude_rated" in groups:
        add("exclude_rated", Run.of("retrieval", reference, exclude_rated=True))
    if "quickstart" in groups:
        add("quickstart", Run.of("retrieval", reference))
    return runs


def measure(run, groups, data_dir):
    """Runs `run`'s command from the repository root; its record (figures, or the failure)."""
    quickstart = "quickstart" in groups
    arguments = [SCRIPTS[run.example], *run.arguments(data_dir)]
    record = {"groups": groups, "run": dataclasses.asdict(run), "command": shlex.join(arguments)}
    with tempfile.TemporaryDirectory(prefix="bench-examples-") as temporary:
        # The quickstart's metrics go where the example writes them by default: the temporary
        # directory, made this run's own through TMPDIR (so is PEP's mask directory).
        example = os.path.splitext(os.path.basename(SCRIPTS[run.example]))[0]
        metrics_json = os.path.join(temporary, f"{example}_metrics.json")
        command = [sys.executable, *arguments] + ([] if quickstart else [f"--metrics_json={metrics_json}"])
        began = time.time()
        completed = subprocess.run(command, cwd=REPO_DIR, env=dict(os.environ, TMPDIR=temporary), capture_output=True,
                                   text=True, timeout=FLAGS.run_timeout)
        record["seconds"] = time.time() - began
        if completed.returncode != 0:
            record["status"] = f"exit status {completed.returncode}"
            record["error"] = completed.stderr[-2000:]
            return record
        with open(metrics_json) as f:
            written = json.load(f)
    record["status"] = "ok"
    record["config"] = {key: written["config"][key] for key in CONFIG_KEYS[run.example]}
    record["data"] = {key: written["dataset"][key] for key in ("name", "ratings", "users", "items")}
    record["metrics"] = written["metrics"]
    record["train_seconds"] = written["train_seconds"]
    if quickstart:
        record["stdout"] = completed.stdout.replace(temporary, tempfile.gettempdir())
    return record


def check_choices():
    """Raises app.UsageError naming a value of a list flag that is not among its choices."""
    for name, allowed in (("datasets", DATASETS), ("optimizers", common.choices.OPTIMIZERS), ("tasks", TASKS),
                          ("groups", GROUPS)):
        unknown = sorted(set(FLAGS[name].value) - set(allowed))
        if unknown:
            raise app.UsageError(f"--{name}: unknown {unknown}; expected some of {list(allowed)}.")
    if not all(seed.isdigit() for seed in FLAGS.seeds):
        raise app.UsageError(f"--seeds must be non-negative integers; got {FLAGS.seeds}.")


def main(argv):
    del argv
    bench_flags.apply_quick({"datasets": ["synthetic"], "optimizers": ["counter_sgd", "sgd"], "seeds": ["0"],
                             "num_ratings": 3000, "epochs": 1})
    check_choices()
    datasets, skipped = list(FLAGS.datasets), {}
    if "ml-100k" in datasets and not os.path.exists(os.path.join(FLAGS.data_dir, "u.data")):
        datasets.remove("ml-100k")
        skipped["ml-100k"] = f"no u.data in {FLAGS.data_dir}"
        print(f"ml-100k: skipped ({skipped['ml-100k']})", flush=True)
    if not datasets:
        raise app.UsageError("No data set left to run.")
    reference = "ml-100k" if "ml-100k" in datasets else datasets[0]
    # As README's quickstart gives it: relative to the repository root, where every command runs.
    data_dir = os.path.relpath(os.path.abspath(FLAGS.data_dir), REPO_DIR)
    runs = planned_runs(datasets, reference)
    print(f"{len(runs)} runs of the examples, {FLAGS.parallel} at a time", flush=True)
    started = time.time()
    records = [None] * len(runs)
    with concurrent.futures.ThreadPoolExecutor(FLAGS.parallel) as pool:
        futures = {pool.submit(measure, run, groups, data_dir): index
                   for index, (run, groups) in enumerate(runs.items())}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            record = records[futures[future]] = future.result()
            print(f"[{done}/{len(runs)}] {record['command']}: {record['status']} in {record['seconds']:.0f} s",
                  flush=True)
            if record["status"] != "ok":
                print(record["error"], file=sys.stderr, flush=True)
    results = {
        "settings": {"quick": FLAGS.quick, "datasets": datasets, "reference_dataset": reference, "data_dir": data_dir,
                     "optimizers": FLAGS.optimizers, "tasks": FLAGS.tasks, "groups": FLAGS.groups,
                     "seeds": [int(seed) for seed in FLAGS.seeds], "num_ratings": FLAGS.num_ratings,
                     "epochs": FLAGS.epochs, "parallel": FLAGS.parallel, "cpus": os.cpu_count(),
                     "logq_corrections": LOGQ_CORRECTIONS, "embedding_kinds": list(EMBEDDING_KINDS)},
        "skipped": skipped,
        "date": datetime.date.today().isoformat(),
        "seconds": time.time() - started,
        "runs": records,
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
    with open(FLAGS.output_json, "w") as f:
        json.dump(results, f, indent=2)
    failed = [record["command"] for record in records if record["status"] != "ok"]
    print(f"Wrote {FLAGS.output_json}: {len(records)} runs in {results['seconds'] / 60:.1f} min"
          + (f"; FAILED: {'; '.join(failed)}" if failed else ""), flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

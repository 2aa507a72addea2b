"""Runs every benchmark, each in its own process, then regenerates docs/benchmarks.md's results.

Run: `make bench` (`.venv/bin/python benchmarks/run_all.py`; about 4 hours on 2 cores, most of it the
quality benchmark's TFRS-tutorial retrieval) or `make bench-quick` (`--quick`: every script's reduced
sizes, a few minutes).

* Full: results in `benchmarks/results/`, then `docs/benchmarks.md`'s section between
  `<!-- benchmarks:begin -->` and `<!-- benchmarks:end -->` is rewritten from them, and README.md's
  quickstart output from the examples' results (`benchmarks/readme_results.py`).
* Quick: results in `build/bench-quick/`, and the regenerated documents go to
  `build/bench-quick/benchmarks.md` and `build/bench-quick/README.md`, copies: the quick figures are a
  smoke test, not for the docs (`--readme=docs/benchmarks.md` rewrites that one in place anyway).

Each script's output streams here and into `build/bench-logs/<mode>/<name>.log`; `run_all.json` records
the command, status and seconds of each. A failing script does not stop the others, but the run
then exits with status 1 and leaves the document alone. `--only` / `--skip` pick scripts by name.
"""

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

from absl import app, flags

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCHMARKS_DIR)
BENCHMARKS_DOC = os.path.join(REPO_DIR, "docs", "benchmarks.md")
README = os.path.join(REPO_DIR, "README.md")
RESULTS_DIR = os.path.join(BENCHMARKS_DIR, "results")
QUICK_RESULTS_DIR = os.path.join(REPO_DIR, "build", "bench-quick")
ML100K_DIR = os.path.normpath(os.path.join(REPO_DIR, "..", "shared", "data", "ml-100k"))


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A script and the arguments it needs here (each takes `--quick` for its reduced sizes).
    `output_args(dir)` points its files into `dir`; `data_flag` takes the MovieLens 100K
    directory; `in_full` is False for a script too long for `make bench` (its committed results
    are kept)."""

    name: str
    script: str
    output_args: object
    data_flag: str = None
    in_full: bool = True
    about: str = ""


def _output_dir_args(directory):
    return [f"--output_dir={directory}"]


BENCHMARKS = (
    Benchmark("state_memory", "state_memory.py", lambda d: [f"--output_json={d}/state_memory.json"],
              about="seconds"),
    Benchmark("first_step", "first_step.py", _output_dir_args, about="1 minute"),
    Benchmark("step_time", "step_time.py", _output_dir_args, about="1-4 minutes"),
    Benchmark("dynamic_scale", "dynamic_scale.py", _output_dir_args, about="5-10 minutes"),
    Benchmark("cluster", "cluster.py", _output_dir_args, about="3 minutes"),
    Benchmark("quality", "quality.py", _output_dir_args, data_flag="data_dir", about="100 minutes"),
    Benchmark("embedding_size", "embedding_size.py",
              lambda d: [f"--output_json={d}/embedding_size.json", f"--output_png_prefix={d}/embedding_size"],
              data_flag="data_dir", about="6-12 minutes"),
    Benchmark("examples", "examples.py", lambda d: [f"--output_json={d}/examples.json"], data_flag="data_dir",
              about="22 minutes"),
    Benchmark("choose_estimate", "choose_estimate.py", lambda d: [f"--output_json={d}/choose_estimate.json"],
              data_flag="ml100k_dir", in_full=False, about="20 minutes: not in `make bench`"),
)
NAMES = [benchmark.name for benchmark in BENCHMARKS]

flags.DEFINE_bool("quick", False, "Every script's reduced sizes (`make bench-quick`).")
flags.DEFINE_list("only", [], f"Run only these benchmarks, of {NAMES} (choose_estimate included when named).")
flags.DEFINE_list("skip", [], "Benchmarks not to run.")
flags.DEFINE_string("output_dir", None, "Results directory (default: benchmarks/results, or build/bench-quick "
                    "with --quick).")
flags.DEFINE_string("readme", None, "Results document to regenerate (default: docs/benchmarks.md, and README.md's "
                    "quickstart output; with --quick, copies of both in build/bench-quick); empty: none.")
flags.DEFINE_string("logs_dir", None, "Where each script's output is logged (default: build/bench-logs/<full|quick>).")
flags.DEFINE_string("data_dir", ML100K_DIR, "MovieLens 100K's directory, for the scripts that read it.")
FLAGS = flags.FLAGS


def selected():
    """The benchmarks to run, or a ValueError naming unknown ones."""
    unknown = sorted(set(FLAGS.only + FLAGS.skip) - set(NAMES))
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; expected some of {NAMES}.")
    if FLAGS.only:
        return [b for b in BENCHMARKS if b.name in FLAGS.only and b.name not in FLAGS.skip]
    return [b for b in BENCHMARKS if (b.in_full or FLAGS.quick) and b.name not in FLAGS.skip]


def command_of(benchmark, output_dir):
    command = [sys.executable, os.path.join(BENCHMARKS_DIR, benchmark.script), *benchmark.output_args(output_dir)]
    if benchmark.data_flag:
        command.append(f"--{benchmark.data_flag}={FLAGS.data_dir}")
    if FLAGS.quick:
        command.append("--quick")
    return command


def run_logged(command, log_path):
    """Runs `command`, its output streamed to stdout and to `log_path`; returns the exit status."""
    with open(log_path, "w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, cwd=REPO_DIR) as process:
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
    return process.returncode


def git_commit():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_DIR, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def shown(command):
    """The command without the interpreter, paths relative to the repository."""
    def relative(part):
        name, equals, value = part.rpartition("=")
        return f"{name}{equals}{os.path.relpath(value, REPO_DIR)}" if os.path.isabs(value) else part

    return " ".join(relative(part) for part in command[1:])


def previous_run(path, mode):
    """The benchmarks recorded in `path` by earlier runs of the same mode (kept when `--only` or
    `--skip` leave them out), or none."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        run = json.load(f)
    return run["benchmarks"] if run.get("mode") == mode else {}


def main(argv):
    del argv
    benchmarks = selected()
    output_dir = os.path.abspath(FLAGS.output_dir or (QUICK_RESULTS_DIR if FLAGS.quick else RESULTS_DIR))
    readme = FLAGS.readme
    if readme is None:
        readme = os.path.join(output_dir, "benchmarks.md") if FLAGS.quick else BENCHMARKS_DOC
    mode = "quick" if FLAGS.quick else "full"
    logs_dir = os.path.abspath(FLAGS.logs_dir or os.path.join(REPO_DIR, "build", "bench-logs", mode))
    os.makedirs(logs_dir, exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)
    print(f"Benchmarks ({mode}) into {output_dir}: "
          + ", ".join(f"{b.name} ({'reduced' if FLAGS.quick else b.about})" for b in benchmarks), flush=True)
    run_path = os.path.join(output_dir, "run_all.json")
    run = {"mode": mode, "cpus": os.cpu_count(), "benchmarks": previous_run(run_path, mode)}
    commit, today = git_commit(), datetime.date.today().isoformat()
    started = time.time()
    for benchmark in benchmarks:
        script = os.path.join(BENCHMARKS_DIR, benchmark.script)
        if not os.path.exists(script):
            print(f"\n== {benchmark.name}: {benchmark.script} is not in this checkout; skipped", flush=True)
            run["benchmarks"][benchmark.name] = {"status": "absent", "date": today, "commit": commit}
            continue
        command = command_of(benchmark, output_dir)
        print(f"\n== {benchmark.name}: {shown(command)}", flush=True)
        began = time.time()
        status = run_logged(command, os.path.join(logs_dir, f"{benchmark.name}.log"))
        seconds = time.time() - began
        run["benchmarks"][benchmark.name] = {"status": "ok" if status == 0 else f"exit status {status}",
                                             "seconds": seconds, "command": shown(command), "date": today,
                                             "commit": commit}
        print(f"== {benchmark.name}: {'done' if status == 0 else f'FAILED (exit status {status})'} in "
              f"{seconds / 60:.1f} min", flush=True)
    with open(run_path, "w") as f:
        json.dump(run, f, indent=2)
    failed = [b.name for b in benchmarks if run["benchmarks"][b.name]["status"] not in ("ok", "absent")]
    print(f"\nThis run: {(time.time() - started) / 60:.1f} min" + (f"; FAILED: {', '.join(failed)}" if failed else ""),
          flush=True)
    if failed:
        sys.exit(1)
    if readme:
        command = [sys.executable, os.path.join(BENCHMARKS_DIR, "readme_results.py"), f"--results_dir={output_dir}",
                   f"--readme={readme}"]
        if FLAGS.quick and FLAGS.readme is None:
            shutil.copyfile(BENCHMARKS_DOC, readme)
            quickstart_readme = os.path.join(output_dir, "README.md")
            shutil.copyfile(README, quickstart_readme)
            command.append(f"--quickstart_readme={quickstart_readme}")
        status = subprocess.run(command).returncode
        if status:
            sys.exit(status)


if __name__ == "__main__":
    app.run(main)

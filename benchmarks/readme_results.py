"""Writes docs/benchmarks.md's benchmark results from `benchmarks/results/*.json`: no hand-copied
numbers.

Run: `.venv/bin/python benchmarks/readme_results.py` (`make bench` and `make bench-quick` run it
last). Only the text between the lines `<!-- benchmarks:begin -->` and `<!-- benchmarks:end -->`
of the target (`--readme`, default docs/benchmarks.md) is replaced; everything else in it is left
as it is, and image links are written relative to the target's directory. Each results file
present gets its section (quality, rare ids, memory, step time, Keras 3 step time, first step, TFRA at scale, training
on a cluster, embedding size, choice of defaults, MovieLens examples), in that order; absent files are listed as not
run. The quickstart's output in README.md (`--quickstart_readme`), between `<!-- quickstart:begin -->` and
`<!-- quickstart:end -->`, is rewritten too, from the quickstart run of `examples.json` (left as it is without
one). `--check` writes nothing and exits with status 1 when a target's section differs from what the JSON gives.

"Within noise" below compares two optimizers' test means over seeds: their difference is within
noise when it is at most two standard errors of the difference, `2 * sqrt(s1^2/n1 + s2^2/n2)`
(sample standard deviations over n seeds), and clearly better or worse otherwise.
"""

import json
import math
import os
import statistics
import sys

from absl import app, flags

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(BENCHMARKS_DIR, "results")
BENCHMARKS_DOC = os.path.join(BENCHMARKS_DIR, "..", "docs", "benchmarks.md")
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
README = os.path.join(BENCHMARKS_DIR, "..", "README.md")
QUICKSTART_BEGIN, QUICKSTART_END = "<!-- quickstart:begin -->", "<!-- quickstart:end -->"

TASK_LABELS = {"rating": "rating RMSE ↓", "ctr": "CTR AUC, MLP ↑", "ctr_mf": "CTR AUC, MF ↑",
               "ctr_big_batch": "CTR AUC, MLP, batch 8,192 ↑", "ctr_mf_big_batch": "CTR AUC, MF, batch 8,192 ↑",
               "retrieval": "recall@100, two-tower ↑", "retrieval_logq": "recall@100, two-tower, log-Q ↑",
               "retrieval_tfrs": "recall@100, TFRS tutorial ↑",
               "retrieval_tfrs_logq": "recall@100, TFRS tutorial, log-Q ↑"}
RETRIEVAL_TASKS = ("retrieval", "retrieval_logq", "retrieval_tfrs", "retrieval_tfrs_logq")
FREQUENCY_AWARE = ("counter_sgd", "counter_sgd_adam", "counter_sgd_cowclip", "counter_sgd_adam_cowclip",
                   "counter_sgd_presence", "frequency_sgd", "rowwise_adagrad_counter")
SMALL_STATE_BYTES = 8  # the retrieval target's bound on the optimizer state per item row
EMBEDDING_SIZE_LABELS = {"rating": "rating RMSE ↓", "ctr": "CTR AUC ↑"}
BUCKETS = ("head", "torso", "tail")
MEMORY_TARGET = 1 / 32  # CounterSGD's optimizer state at most this share of Adagrad's at d = 64

flags.DEFINE_string("results_dir", RESULTS_DIR, "Directory of the benchmarks' JSON and PNG files.")
flags.DEFINE_string("readme", BENCHMARKS_DOC, "The Markdown file whose marked section is rewritten "
                    "(default docs/benchmarks.md).")
flags.DEFINE_string("quickstart_readme", None, "The Markdown file whose quickstart output is rewritten (default: "
                    "README.md when --readme is docs/benchmarks.md, else none); empty: none.")
flags.DEFINE_bool("check", False, "Write nothing; exit 1 when a file's section is not what the JSON gives.")
FLAGS = flags.FLAGS


class MarkerError(ValueError):
    """The target lacks the markers, or has them twice or in the wrong order."""


def replace_section(text, section, begin=BEGIN, end=END):
    """`text` with the lines between the `begin` and `end` marker lines replaced by `section`."""
    lines = text.split("\n")
    begins = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(begins) != 1 or len(ends) != 1:
        raise MarkerError(f"The file must hold the line {begin} once and the line {end} once (found "
                          f"{len(begins)} and {len(ends)}); put both where the generated text goes.")
    if begins[0] > ends[0]:
        raise MarkerError(f"{end} comes before {begin} in the file.")
    return "\n".join(lines[:begins[0] + 1] + [section.strip("\n")] + lines[ends[0]:])


# ---- Formatting helpers. ----


def load(results_dir, name):
    path = os.path.join(results_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def mean_std(stats, digits=4):
    if not stats:
        return "–"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def compare(a, b, higher_is_better=True):
    """('within noise of' | 'better than' | 'worse than', a - b, the noise): a against b."""
    difference = a["mean"] - b["mean"]
    noise = 2 * math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    if abs(difference) <= noise:
        verdict = "within noise of"
    else:
        verdict = "better than" if (difference > 0) == higher_is_better else "worse than"
    return verdict, difference, noise


def image(results_dir, readme_dir, file_name, alt):
    path = os.path.join(results_dir, file_name)
    if not os.path.exists(path):
        return []
    return [f"![{alt}]({os.path.relpath(path, readme_dir)})", ""]


def labelled(results, key):
    """An optimizer's label as its benchmark wrote it, else its key."""
    return results.get(key, {}).get("label", key)


def measured_optimizers(tasks):
    """{optimizer: its result on the first task that measured it}, in the order the tasks met them
    (some optimizers are measured on some tasks only)."""
    results = {}
    for task in tasks.values():
        for key, result in task["optimizers"].items():
            results.setdefault(key, result)
    return results


def signed(value, digits):
    """`value` with its sign, "+0" rather than "-0" where it rounds to zero."""
    return f"{round(value, digits) or 0.0:+,.{digits}f}"


def size_label(rows):
    exponent = math.log10(rows)
    return f"10^{exponent:g}" if exponent == int(exponent) else f"{rows:,}"


# ---- Sections. ----


def header(run, results_dir, readme_dir):
    lines = ["## Benchmark results", "", f"Generated by `benchmarks/readme_results.py` from the JSON files in "
             f"`{os.path.relpath(results_dir, readme_dir)}/`; do not edit by hand."]
    if not run:
        return lines
    rows = run["benchmarks"]
    ran = {name: row for name, row in rows.items() if row["status"] != "absent"}
    command = "make bench-quick" if run["mode"] == "quick" else "make bench"
    if ran:
        dates = sorted({row["date"] for row in ran.values()})
        commits = sorted({row["commit"] for row in ran.values()})
        minutes = sum(row.get("seconds", 0.0) for row in ran.values()) / 60
        when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
        lines[-1] += (f" Produced by `{command}` (`benchmarks/run_all.py`) on {when} at commit "
                     + ", ".join(f"`{commit}`" for commit in commits) + f", {run['cpus']} CPU cores; minutes: "
                     + ", ".join(f"{name} {row.get('seconds', 0.0) / 60:.1f}" for name, row in ran.items())
                     + f" ({minutes:.0f} in all).")
    if run["mode"] == "quick":
        lines += ["", "**Quick run**: reduced sizes (one seed, one learning rate, small data): a smoke test "
                  "of the benchmarks, not figures to quote. `make bench` gives those."]
    failed = [name for name, row in ran.items() if row["status"] != "ok"]
    if failed:
        lines += ["", f"Failed in the last run (their sections show older results, if any): {', '.join(failed)}."]
    absent = [name for name, row in rows.items() if row["status"] == "absent"]
    if absent:
        lines += ["", f"Not in the checkout, so not run: {', '.join(absent)}."]
    return lines


def quality_sections(quality, results_dir, readme_dir):
    settings = quality["settings"]
    lines = ["### Quality: rating RMSE, CTR AUC, retrieval recall@100", "",
             f"`benchmarks/quality.py`: embeddings of width d = {settings['dim']}; rating and CTR, MLP: "
             "`tf_freqsgd.models.ranking` (user and item embeddings, an MLP head); CTR, MF: logistic matrix "
             "factorisation (`tf_freqsgd.models.matrix_factorization`, embeddings and per-id biases only); "
             f"these three: epochs {settings['ranking_epochs']}, batch {settings['ranking_batch_size']}; retrieval, "
             "two-tower: `tf_freqsgd.models.retrieval`, TFRS two-tower, in-batch "
             f"softmax (epochs {settings['retrieval_epochs']}, batch {settings['retrieval_batch_size']}); retrieval, "
             "TFRS tutorial: the TFRS basic retrieval tutorial's model (`IntegerLookup` → "
             f"`Embedding({settings.get('tfrs_dim', 32)})` per tower, `tfrs.tasks.Retrieval()` with its defaults: "
             f"softmax loss summed over the batch; epochs {settings.get('tfrs_epochs', 3)}, batch "
             f"{settings.get('tfrs_batch_size', 8192):,}); both without log-Q correction and with it (\"log-Q\": "
             "the logits less the log of each item's training frequency); recall@"
             f"{settings['recall_k']} over the whole catalogue. Split 80/10/10 by a fixed seed; each optimizer's "
             f"learning rate chosen on validation from a grid of the same size; test metric mean ± sample std over "
             f"{settings['seeds']} seed(s) at that rate (in brackets). SGD, Adagrad and Adam are tf_keras's legacy "
             "(sparse) optimizers. Best mean per column in bold; * = the rate chosen is at an end of its grid.", ""]
    for why in quality.get("skipped", {}).values():
        lines += [f"Skipped: {why}", ""]
    targets, retrieval = [], []
    for dataset, entry in quality["datasets"].items():
        tasks = entry["tasks"]
        lines += [f"**{entry['name']}** ({entry['num_users']:,} users, {entry['num_items']:,} items, "
                  f"{entry['num_ratings']:,} ratings)", ""]
        lines.append("| optimizer | " + " | ".join(TASK_LABELS.get(t, t) for t in tasks) + " |")
        lines.append("|---|" + "---|" * len(tasks))
        best = {}
        for task_name, task in tasks.items():
            means = [r["test"]["mean"] for r in task["optimizers"].values() if r["test"]]
            best[task_name] = (max if task["higher_is_better"] else min)(means) if means else None
        measured = measured_optimizers(tasks)
        for optimizer in measured:
            cells = []
            for task_name, task in tasks.items():
                result = task["optimizers"].get(optimizer)
                if not result or not result["test"]:
                    cells.append("diverged" if result else "–")
                    continue
                value = mean_std(result["test"])
                if result["test"]["mean"] == best[task_name]:
                    value = f"**{value}**"
                edge = "*" if result["chosen_at_grid_edge"] else ""
                cells.append(f"{value} ({result['learning_rate']:g}{edge})")
            lines.append(f"| {labelled(measured, optimizer)} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += image(results_dir, readme_dir, f"quality_curves_{dataset}.png", f"learning curves, {entry['name']}")
        targets += quality_targets(entry)
        retrieval += retrieval_targets(entry)
    if targets:
        lines += ["Against the target (CounterSGD's test AUC and recall within noise of Adagrad's or better, and "
                  "clearly above SGD's):", ""] + targets + [""]
    if retrieval:
        lines += ["Retrieval target (the best frequency-aware optimizer at ≤ 8 B of state per item row reaches "
                  "Adagrad's and SGD's recall@100; \"met\" = within noise or better):", ""] + retrieval + [""]
    return lines


def counter_sgd_against(task, stats_of, others=("adagrad", "sgd")):
    """'within noise of Adagrad's (+0.0010, noise ±0.0020); better than SGD's (...)': CounterSGD's
    statistics (`stats_of(result)`) against each of `others`', or '' without CounterSGD's."""
    results = task["optimizers"]
    counter = results.get("counter_sgd") and stats_of(results["counter_sgd"])
    if not counter:
        return ""
    parts = []
    for other in others:
        theirs = results.get(other) and stats_of(results[other])
        if theirs:
            verdict, difference, noise = compare(counter, theirs, task["higher_is_better"])
            parts.append(f"{verdict} {labelled(results, other)}'s ({difference:+.4f}, noise ±{noise:.4f})")
    return "; ".join(parts)


def quality_targets(entry):
    lines = []
    for task_name in ("ctr", "ctr_mf", *RETRIEVAL_TASKS):
        task = entry["tasks"].get(task_name)
        verdicts = task and counter_sgd_against(task, lambda result: result["test"])
        if verdicts:
            metric = TASK_LABELS[task_name].rstrip(" ↑↓")
            lines.append(f"* {entry['name']}, {metric}: CounterSGD is {verdicts}.")
    return lines


def best_small_state(task):
    """(key, result) of the frequency-aware optimizer with at most SMALL_STATE_BYTES per item row
    whose test mean is best, or None."""
    candidates = [(key, result) for key, result in task["optimizers"].items()
                  if key in FREQUENCY_AWARE and result["test"]
                  and result.get("state_bytes_per_item_row", math.inf) <= SMALL_STATE_BYTES]
    if not candidates:
        return None
    return max(candidates, key=lambda item: item[1]["test"]["mean"] * (1 if task["higher_is_better"] else -1))


def retrieval_targets(entry):
    """Per retrieval task: the best frequency-aware optimizer at <= 8 B/row against Adagrad and SGD."""
    lines = []
    for task_name in RETRIEVAL_TASKS:
        task = entry["tasks"].get(task_name)
        best = task and best_small_state(task)
        if not best:
            continue
        key, result = best
        diverged = (f" ({result['diverged_seeds']} of {result['diverged_seeds'] + result['test']['n']} seeds "
                    "diverged at its rate)" if result.get("diverged_seeds") else "")
        parts = []
        for other in ("adagrad", "sgd"):
            theirs = task["optimizers"].get(other)
            if theirs and theirs["test"]:
                verdict, difference, noise = compare(result["test"], theirs["test"])
                met = "met" if verdict != "worse than" else "missed"
                parts.append(f"{verdict} {labelled(task['optimizers'], other)}'s ({difference:+.4f}, noise "
                             f"±{noise:.4f}: {met})")
        if parts:
            lines.append(f"* {entry['name']}, {TASK_LABELS[task_name].rstrip(' ↑')}: the best at ≤ "
                         f"{SMALL_STATE_BYTES} B/row is {labelled(task['optimizers'], key)} "
                         f"({result['state_bytes_per_item_row']:g} B/row){diverged}, " + "; ".join(parts) + ".")
    return lines


# Per CTR model: (its task at batch 256, the same at the big batch, the CounterSGD setting without
# CowClip, the same with it): the MLP pairs CounterSGD with Adam on its dense layers.
BIG_BATCH_MODELS = {"MF": ("ctr_mf", "ctr_mf_big_batch", "counter_sgd", "counter_sgd_cowclip"),
                    "MLP": ("ctr", "ctr_big_batch", "counter_sgd_adam", "counter_sgd_adam_cowclip")}
COWCLIP_BOUND = 0.002  # the target: CowClip's AUC at the big batch within this of batch 256's


def big_batch_sections(quality):
    """CTR-MF and CTR-MLP at the small and the big batch, CounterSGD with and without CowClip."""
    rows, big_batch = [], None
    for entry in quality["datasets"].values():
        for model, (small_name, big_name, plain, clipped) in BIG_BATCH_MODELS.items():
            small, big = entry["tasks"].get(small_name), entry["tasks"].get(big_name)
            if not small or not big:
                continue
            big_batch = big["batch_size"]

            def cell(task, key):
                result = task["optimizers"].get(key)
                return f"{mean_std(result['test'])} ({result['learning_rate']:g})" if result and result["test"] else "–"

            reference = small["optimizers"].get(plain)
            differences = []
            for key in (plain, clipped):
                result = big["optimizers"].get(key)
                if reference and reference["test"] and result and result["test"]:
                    difference = result["test"]["mean"] - reference["test"]["mean"]
                    differences.append(signed(difference, 4) + (" (met)" if key == clipped and
                                                                 difference >= -COWCLIP_BOUND else ""))
                else:
                    differences.append("–")
            rows.append(f"| {entry['name']} | {model}: {labelled(small['optimizers'], plain)} | "
                        + " | ".join([cell(small, plain), cell(big, plain), cell(big, clipped), cell(small, clipped),
                                      cell(big, "adam")] + differences) + " |")
    if not rows:
        return []
    return ["### Big batches: CowClip", "",
            f"The CTR tasks at batch 256 and again at batch {big_batch:,} with the same epochs (so 1/32 of the "
            "steps), rates chosen on validation from 7-point grids as above (the loss is averaged over the batch). "
            "The MLP's runs pair CounterSGD with Adam (0.001) on its dense layers, whose rates CowClip's would "
            "blow up. CowClip: `cowclip_ratio=1e-5` (chosen on MovieLens 100K's CTR-MF at the big batch from 1, "
            "1e-3, 1e-4 and 1e-5, validation, seed 0; at 1, the paper's ratio, the bound never binds on these "
            "weights and results equal CounterSGD's), so each row's gradient is bounded by 1e-5 per occurrence. "
            f"Test AUC, mean ± std over seeds (rate). Target: with CowClip the big batch within {COWCLIP_BOUND} "
            "of the same setting without it at 256 (\"met\").", "",
            f"| data | model: setting | 256 | {big_batch:,} | + CowClip, {big_batch:,} | + CowClip, 256 | "
            f"Adam, {big_batch:,} | {big_batch:,} − 256 | + CowClip, {big_batch:,} − 256 |",
            "|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def robustness_sections(quality, results_dir, readme_dir):
    """Each optimizer's range of learning rates within 5% of its best, per task, and the target."""
    recommended = quality["settings"].get("recommended")
    lines = ["### Learning-rate robustness: the rates within 5% of each optimizer's best", "",
             "Seed 0's validation metric at each of the grid's rates (7 points a factor 10^(1/3) apart, spanning "
             "100×; plots below): the widest run of rates whose metric is within 5% of the optimizer's best "
             "(RMSE at most 5% above, AUC and recall at least 95% of it), as `lowest–highest (span)`; ✓ where the "
             "span reaches 10×. `d` marks the optimizer's default rate lying in that range. Rating and CTR "
             "average their loss over the batch; every retrieval task sums it (TFRS), so the SGD family's rates "
             "there are about B times smaller.", ""]
    targets = []
    for dataset, entry in quality["datasets"].items():
        tasks = entry["tasks"]
        measured = measured_optimizers(tasks)
        lines += [f"**{entry['name']}**", "",
                  "| optimizer (default rate) | " + " | ".join(TASK_LABELS.get(t, t) for t in tasks) + " |",
                  "|---|" + "---|" * len(tasks)]
        for optimizer in measured:
            cells, default = [], None
            for task in tasks.values():
                result = task["optimizers"].get(optimizer)
                if not result or not result.get("robust_rates"):
                    cells.append("–")
                    continue
                default = result["default_learning_rate"]
                low, high = result["robust_rates"]
                wide = " ✓" if result["robust_span"] >= 10 * 0.99 else ""
                inside = " d" if result["default_in_range"] else ""
                cells.append(f"{low:g}–{high:g} ({result['robust_span']:.3g}×){wide}{inside}")
            label = labelled(measured, optimizer)
            lines.append(f"| {label}{'' if default is None else f' ({default:g})'} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += image(results_dir, readme_dir, f"quality_rates_{dataset}.png", f"metric against rate, {entry['name']}")
        if recommended:
            results = [task["optimizers"].get(recommended) for task in tasks.values()]
            results = [r for r in results if r and r.get("robust_rates")]
            wide = sum(r["robust_span"] >= 10 * 0.99 for r in results)
            inside = sum(r["default_in_range"] for r in results)
            targets.append(f"* {entry['name']}: {labelled(measured, recommended)} "
                           f"is within 5% of its best over 10× on {wide} of {len(results)} tasks; its default rate "
                           f"is in that range on {inside} of {len(results)}.")
    if targets:
        lines += ["Against the target (the recommended optimizer within 5% of its best over a 10× range on every "
                  "task, its default rate inside it):", ""] + targets + [""]
    return lines


def rare_id_sections(quality, results_dir, readme_dir):
    shares = quality["settings"]["bucket_shares"]
    lines = ["### Rare ids: test metric by item frequency", "",
             f"Items ranked by training interactions: head = the most frequent items holding the first "
             f"{shares[0]:.0%} of them, torso = the next up to {shares[1]:.0%}, tail = the rest (and items unseen in "
             "training). Test examples bucketed by their item; mean ± std over seeds at each optimizer's chosen rate.",
             ""]
    for dataset, entry in quality["datasets"].items():
        tasks = entry["tasks"]
        first_results = measured_optimizers(tasks)
        optimizers = list(first_results)
        lines += [f"**{entry['name']}**", "",
                  "| task | bucket: items (training interactions each) | "
                  + " | ".join(labelled(first_results, o) for o in optimizers) + " |",
                  "|---|---|" + "---|" * len(optimizers)]
        for task_name, task in tasks.items():
            for index, bucket in enumerate(BUCKETS):
                summary = task["buckets"][bucket]
                counts = (f"{summary['min_train_count']}–{summary['max_train_count']}" if summary["items"] else "–")
                cells = []
                for optimizer in optimizers:
                    result = task["optimizers"].get(optimizer)  # absent: not measured on this task
                    cells.append(mean_std(result and result["test_buckets"][bucket], 3))
                label = (f"{bucket}: {summary['items']:,} ({counts}), "
                         f"{task['test_examples_per_bucket'][index]:,} test examples")
                lines.append(f"| {TASK_LABELS.get(task_name, task_name)} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
        for task_name, task in tasks.items():
            verdicts = counter_sgd_against(task, lambda result: result["test_buckets"]["tail"])
            if verdicts:
                metric = TASK_LABELS.get(task_name, task_name).rstrip(" ↑↓")
                lines.append(f"* Tail, {metric}: CounterSGD is {verdicts}.")
        lines.append("")
        lines += image(results_dir, readme_dir, f"quality_buckets_{dataset}.png", f"metric by bucket, {entry['name']}")
    return lines


def memory_sections(state_memory, quality):
    lines = ["### Optimizer-state memory", ""]
    if state_memory:
        dims = sorted(int(key.rsplit("_d", 1)[1]) for key in state_memory["results"][0]
                      if key.startswith("bytes_per_row_d"))
        widest = dims[-1]
        adagrad = next(r for r in state_memory["results"] if r["optimizer"].startswith("Adagrad"))
        lines += [f"`benchmarks/state_memory.py`: bytes of the variables each optimizer creates for one table of "
                  f"{state_memory['rows']:,} rows, per row (measured after one step).", "",
                  "| optimizer | " + " | ".join(f"state bytes/row, d={d}" for d in dims)
                  + f" | vs Adagrad, d={widest} |",
                  "|---|" + "---|" * (len(dims) + 1)]
        for row in state_memory["results"]:
            cells = " | ".join(f"{row[f'bytes_per_row_d{d}']:g}" for d in dims)
            ratio = row[f"bytes_per_row_d{widest}"] / adagrad[f"bytes_per_row_d{widest}"]
            lines.append(f"| {row['optimizer']} | {cells} | {ratio:.4g} |")
        counter = next((r for r in state_memory["results"] if r["optimizer"] == "CounterSGD"), None)
        if counter and widest == 64:
            ratio = counter["bytes_per_row_d64"] / adagrad["bytes_per_row_d64"]
            verdict = "meets" if ratio <= MEMORY_TARGET else "misses"
            lines += ["", f"CounterSGD keeps {ratio:.4g} of Adagrad's state per row at d = 64 (1/{1 / ratio:.0f}): "
                      f"it {verdict} the ≤ 1/32 target."]
        lines.append("")
    if quality:
        dataset, entry = next(iter(quality["datasets"].items()))
        tasks = entry["tasks"]
        first_results = measured_optimizers(tasks)
        lines += [f"The trained models of the quality benchmark ({entry['name']}), measured with "
                  "`tf_freqsgd.optimizer_state_bytes`: total optimizer state (dense layers included), and per item "
                  "row (the item table's state alone).", "",
                  "| optimizer | " + " | ".join(f"{t}: total | {t}: per item row" for t in tasks) + " |",
                  "|---|" + "---|---|" * len(tasks)]
        for optimizer in first_results:
            cells = []
            for task in tasks.values():
                result = task["optimizers"].get(optimizer, {})  # absent: not measured on this task
                if "state_bytes" in result:
                    cells += [f"{result['state_bytes']:,} B", f"{result['state_bytes_per_item_row']:g} B"]
                else:
                    cells += ["–", "–"]
            lines.append(f"| {labelled(first_results, optimizer)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


STEP_TARGET, STEP_TARGET_SPEC = 1.10, "10000000x16"  # CounterSGD's fused step against legacy SGD's


def step_time_sections(step_time, results_dir, readme_dir):
    specs = list(step_time["results"])
    lines = ["### Step time", "",
             f"`benchmarks/step_time.py`: one embedding table, {step_time['batch']:,} Zipf "
             f"({step_time['zipf_exponent']}) ids a step; a step is lookup, loss, gradient and update in one "
             "`tf.function`, the update is `apply_gradients` alone. Medians over blocks, ratios to legacy SGD in "
             "the same run (the ratios are what carry over between machines).", "",
             "| optimizer | " + " | ".join(f"{s} step (ms) | step / SGD | update / SGD" for s in specs) + " |",
             "|---|" + "---|---|---|" * len(specs)]
    for name in step_time["results"][specs[0]]:
        cells = []
        for spec in specs:
            row = step_time["results"][spec][name]
            cells += [f"{row['step_ms']:,.2f}", f"{row['step_ratio']:,.2f}", f"{row['update_ratio']:,.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for optimizer in ("CounterSGD", "RowwiseAdagradCounter"):
        speedups = []
        for spec in specs:
            rows = step_time["results"][spec]
            if f"{optimizer}, fused op" in rows and f"{optimizer}, pure TF" in rows:
                speedup = rows[f"{optimizer}, pure TF"]["update_ms"] / rows[f"{optimizer}, fused op"]["update_ms"]
                speedups.append(f"{speedup:.2f}× on {spec}")
        if speedups:
            lines.append(f"* {optimizer}: the fused op's update is " + ", ".join(speedups)
                         + " as fast as the pure-TF path's.")
    fused = step_time["results"].get(STEP_TARGET_SPEC, {}).get("CounterSGD, fused op")
    if fused:
        ratio = fused["step_ratio"]
        verdict = "meets" if ratio <= STEP_TARGET else "misses"
        lines.append(f"* CounterSGD's fused step {verdict} the target of ≤ {STEP_TARGET:.2f}× legacy SGD's on "
                     f"{STEP_TARGET_SPEC} ({ratio:.2f}× in this run).")
    lines.append("")
    for spec, parts in step_time.get("breakdown", {}).items():
        lines += [f"CounterSGD's update in parts on {spec} (the profile behind the step target; each part a traced "
                  "function of its own, timed in interleaved blocks, so each includes one call's cost):", "",
                  "| part | ms | / legacy SGD's update |", "|---|---|---|"]
        lines += [f"| {name} | {part['ms']:.3f} | {part['ratio_to_sgd_update']:.2f} |" for name, part in parts.items()]
        lines.append("")
    return lines + image(results_dir, readme_dir, "step_time.png", "step time")


def keras3_step_sections(keras3):
    lines = ["### Step time with Keras 3", "",
             f"`benchmarks/keras3_step_time.py` (`make bench-keras3`, TensorFlow {keras3['tensorflow']}): "
             f"`Embedding({keras3['rows']:,}, {keras3['dim']})`, `Flatten`, `Dense(1)`, `train_on_batch` on "
             f"{keras3['batch']:,} Zipf (1.05) ids a step, each optimizer in its own process; medians over "
             f"{keras3['blocks']} blocks of {keras3['steps_per_block']} steps, ratios to Keras 3's SGD in the same run.",
             "", "| optimizer | step (ms) | step / Keras 3 SGD |", "|---|---|---|"]
    for label, row in keras3["results"].items():
        lines.append(f"| {label} | {row['step_ms']:,.2f} | {row['step_ratio']:,.2f} |")
    results = keras3["results"]
    counter = results["CounterSGD (Keras 3), fused op"]["step_ms"]
    sgd, adagrad = results["SGD (Keras 3)"]["step_ms"], results["Adagrad (Keras 3)"]["step_ms"]
    lines += ["", f"Against the targets (≤ 1.0× Keras 3 SGD, ≤ ⅓ of its Adagrad): CounterSGD is "
              f"{counter / sgd:.2f}× Keras 3 SGD ({'met' if counter <= sgd else 'missed'}) and "
              f"{counter / adagrad:.2f}× its Adagrad ({'met' if 3 * counter <= adagrad else 'missed'})."]
    row_embedding = results.get("CounterSGD (Keras 3), fused op, RowEmbedding")
    legacy = results.get("SGD (tf_keras legacy)")
    if row_embedding and legacy:
        lines += ["", "Keras 3's `Embedding` reads its whole table at every lookup, and the optimizer's scatter then "
                  "copies it: most of a Keras 3 step, whatever the optimizer. `tf_freqsgd.layers.RowEmbedding` "
                  f"gathers the batch's rows only: CounterSGD's step is then {row_embedding['step_ms']:.2f} ms, "
                  f"{row_embedding['step_ms'] / legacy['step_ms']:.2f}× tf_keras' legacy SGD in the same run."]
    return lines + [""]


def first_step_sections(first_step, results_dir, readme_dir):
    settings = first_step["settings"]
    lines = ["### Time to the first training step", "",
             f"`benchmarks/first_step.py`: a fresh process per measurement ({settings['model']}); medians of "
             f"{settings['repeats']} process(es) per setting, {settings['cpus']} CPU cores.", "",
             "| setting | imports (s) | first step after the imports (s) | a second one-batch `fit` (ms) |",
             "|---|---|---|---|"]
    for row in first_step["results"].values():
        lines.append(f"| {row['label']} | {row['median_import_seconds']:.1f} | {row['median_first_step_seconds']:.1f} "
                     f"| {row['median_later_step_ms']:.0f} |")
    default = first_step["results"].get("excluded")
    if default:
        seconds, target = default["median_first_step_seconds"], first_step["target_seconds"]
        verdict = "meets" if seconds <= target else "misses"
        lines += ["", f"tf_freqsgd's default {verdict} the target of ≤ {target:g} s after the imports "
                  f"({seconds:.1f} s)."]
    lines.append("")
    return lines + image(results_dir, readme_dir, "first_step.png", "time to the first step")


def dynamic_sections(dynamic, results_dir, readme_dir):
    settings, rows = dynamic["settings"], dynamic["results"]
    sizes = sorted({r["rows"] for r in rows})
    optimizers = list(dict.fromkeys(r["optimizer"] for r in rows))
    by_key = {(r["rows"], r["optimizer"]): r for r in rows}
    lines = ["### TFRA dynamic embeddings at scale", "",
             f"`benchmarks/dynamic_scale.py`: `de.keras.layers.Embedding` of width {settings['dim']}, "
             f"{settings['batch']:,} Zipf ({settings['zipf_exponent']}) ids a step, every table filled to N ids; "
             "median ms a step and, in brackets, the ratio to legacy SGD timed alternately in the same process. "
             "State bytes a row: the optimizer tables' values, then with their 8-byte keys.", "",
             "| optimizer | state B/row | " + " | ".join(f"N = {size_label(n)}" for n in sizes)
             + f" | step growth {size_label(sizes[0])} → {size_label(sizes[-1])} | peak RSS at N = {size_label(sizes[-1])} |",
             "|---|---|" + "---|" * len(sizes) + "---|---|"]
    growth_of = {}
    for optimizer in optimizers:
        cells, state = [], "–"
        for size in sizes:
            row = by_key.get((size, optimizer))
            if not row or "error" in row:
                cells.append("failed" if row else "–")
                continue
            keys = 8 * sum(table["rows"] for table in row["state_tables"].values()) / row["rows"]
            state = f"{row['state_value_bytes_per_row']:g} ({row['state_value_bytes_per_row'] + keys:g})"
            cells.append(f"{row['step_ms']:.1f} ({row['step_vs_sgd']:.2f}×)")
        largest = by_key.get((sizes[-1], optimizer))
        peak = f"{largest['peak_rss_mib'] / 1024:.2f} GiB" if largest and "error" not in largest else "–"
        if largest and largest.get("growth"):
            growth_of[optimizer] = largest["growth"]
        growth = f"{growth_of[optimizer]:.2f}×" if optimizer in growth_of else "–"
        lines.append(f"| {dynamic.get('labels', {}).get(optimizer, optimizer)} | {state} | " + " | ".join(cells)
                     + f" | {growth} | {peak} |")
    lines.append("")
    if "counter_sgd" in growth_of and "sgd" in growth_of:
        verdict = "meets" if growth_of["counter_sgd"] <= 1.5 else "misses"
        lines += [f"Growth is the same optimizer timed alternately on its own table of {size_label(sizes[0])} ids. "
                  f"CounterSGD's step grows {growth_of['counter_sgd']:.2f}× from {size_label(sizes[0])} to "
                  f"{size_label(sizes[-1])} ids: it {verdict} the ≤ 1.5× target; legacy SGD on the same TFRA "
                  f"table grows {growth_of['sgd']:.2f}×.", ""]
    lines += dynamic_targets(by_key, sizes) + dynamic_profile(dynamic, by_key, sizes[0])
    return lines + image(results_dir, readme_dir, "dynamic_scale.png", "TFRA dynamic embeddings at scale")


PROFILE_PARTS = ("embedding default values", "embedding lookup", "embedding upsert", "optimizer state lookup",
                 "optimizer state upsert", "other ops", "all ops")


def dynamic_profile(dynamic, by_key, size):
    """Where each optimizer's step time goes at ``size`` ids, from TensorFlow's profiler."""
    rows = [(optimizer, row["op_profile_ms"]) for (rows, optimizer), row in by_key.items()
            if rows == size and row.get("op_profile_ms")]
    if not rows:
        return []
    steps = dynamic["settings"].get("profile_steps")
    lines = [f"Where a step's op time goes at N = {size_label(size)}: ms a step, {steps} steps traced by "
             "TensorFlow's profiler (one thread: the ops run one at a time; the executor's time between ops is "
             "in no column). TFRA draws the embedding's initializer for every id it looks up (its default "
             "values); the last column compares all ops with legacy SGD's profiled in the same process.", "",
             "| optimizer | " + " | ".join(PROFILE_PARTS) + " | all ops over SGD's |",
             "|---|" + "---|" * (len(PROFILE_PARTS) + 1)]
    for optimizer, profile in rows:
        measured, baseline = profile["measured"], profile["baseline"]
        cells = [f"{measured.get(part, 0.0):.2f}" for part in PROFILE_PARTS]
        lines.append(f"| {dynamic.get('labels', {}).get(optimizer, optimizer)} | " + " | ".join(cells)
                     + f" | {measured['all ops'] / baseline['all ops']:.2f}× |")
    return lines + [""]


def dynamic_targets(by_key, sizes):
    """The step-time targets on TFRA tables: CounterSGD ≤ 1.15× legacy SGD and RowwiseAdagradCounter
    no slower than TFRA's Adagrad (their ratios to SGD compared), at every size."""
    def ratios(optimizer):
        return [by_key.get((size, optimizer), {}).get("step_vs_sgd") for size in sizes]

    lines = []
    counter = ratios("counter_sgd")
    if all(counter):
        verdict = "meets" if max(counter) <= 1.15 else "misses"
        lines.append(f"* CounterSGD {verdict} the target of ≤ 1.15× legacy SGD at every size: "
                     + ", ".join(f"{r:.2f}×" for r in counter) + ".")
    rowwise, adagrad = ratios("rowwise_adagrad_counter"), ratios("adagrad")
    if all(rowwise) and all(adagrad):
        held = sum(r <= a for r, a in zip(rowwise, adagrad))
        verdict = "meets" if held == len(sizes) else f"misses (holds at {held} of {len(sizes)} sizes)"
        lines.append(f"* RowwiseAdagradCounter {verdict} the target of no slower than TFRA's Adagrad: "
                     + ", ".join(f"{r:.2f}× against {a:.2f}×" for r, a in zip(rowwise, adagrad)) + " SGD's step.")
    return lines + [""] if lines else []


def cluster_sections(cluster, results_dir, readme_dir):
    settings, runs, bound = cluster["settings"], cluster["runs"], cluster["bound_bytes_per_touched_row"]
    touched = runs[0]["touched_rows_per_step"]
    lines = ["### Cluster traffic and step rate", "",
             f"`benchmarks/cluster.py` (`make bench-cluster`): `Embedding({settings['rows']:,}, {settings['dim']})` "
             f"→ `GlobalAveragePooling1D` → `Dense(1)` through `model.fit`, global batches of {settings['batch']:,} "
             f"examples of {settings['ids_per_example']} Zipf-like ({settings['zipf_exponent']}) ids "
             f"({settings['occurrences_per_step']:,} ids, {touched:,.0f} distinct rows touched a step); "
             + "; ".join(settings["strategies"].values()) + ", every process on localhost. " + cluster["method"], "",
             "| strategy | optimizer | steps/s | KiB sent a step | over SGD's, a step | over SGD's, per touched row |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {settings['strategies'][run['strategy']]} | {run['label']} | {run['steps_per_second']:.1f} | "
                     f"{run['bytes_per_step'] / 1024:,.1f} | {signed(run['bytes_over_sgd_per_step'], 0)} B | "
                     f"{signed(run['bytes_over_sgd_per_touched_row'], 1)} B |")
    lines.append("")
    for strategy, label in settings["strategies"].items():
        counter = [run for run in runs if run["strategy"] == strategy and run["optimizer"] == "counter_sgd"]
        adagrad = [run for run in runs if run["strategy"] == strategy and run["optimizer"] == "adagrad"]
        verdicts = [f"{run['label']} {signed(run['bytes_over_sgd_per_touched_row'], 1)} B per touched row "
                    f"({'meets' if run['bytes_over_sgd_per_touched_row'] <= bound else 'misses'} the bound)"
                    for run in counter]
        verdicts += [f"beside it {run['label']} {signed(run['bytes_over_sgd_per_touched_row'], 1)} B"
                     for run in adagrad]
        lines.append(f"* {label}, traffic over SGD's against the ≤ {bound} B per touched row bound: "
                     + "; ".join(verdicts) + ".")
    lines.append("")
    # What sending the gradient as one row per occurrence, where SGD sends one row and its int64 id
    # per touched row, adds per touched row.
    row_bytes = 4 * settings["dim"]
    per_occurrence = (settings["occurrences_per_step"] * row_bytes - touched * (row_bytes + 8)) / touched
    if any(run["optimizer"] == "counter_sgd" and run["bytes_over_sgd_per_touched_row"] > bound
           and abs(run["bytes_over_sgd_per_touched_row"] - per_occurrence) <= 0.05 * per_occurrence for run in runs):
        lines += [f"Where CounterSGD misses, its excess is what sending the gradient with one row per occurrence "
                  f"({settings['occurrences_per_step']:,} rows of {settings['dim']} floats a step), rather than one "
                  f"row and its int64 id per touched row as SGD does after summing duplicates, adds: "
                  f"({settings['occurrences_per_step']:,} × {row_bytes} B − {touched:,.0f} × {row_bytes + 8} B) / "
                  f"{touched:,.0f} = {per_occurrence:.1f} B per touched row.", ""]
    lines += [f"* {note}" for note in cluster["notes"]] + ["", cluster["caveat"], ""]
    return lines + image(results_dir, readme_dir, "cluster.png", "training on a cluster")


def embedding_size_sections(sizes, results_dir, readme_dir):
    seeds = sizes.get("seeds", 1)
    lines = ["### Embedding size: MLET and PEP against plain tables", "",
             f"`benchmarks/embedding_size.py` on {sizes['dataset']}: test metric, mean ± sample std over "
             f"{seeds} seed(s) (learning rate, and MLET's inner width, chosen on validation at seed 0; the epoch "
             f"on validation per seed, of {sizes['epochs']}, PEP tickets {sizes.get('retrain_epochs', sizes['epochs'])}"
             f"); embedding parameters at inference (seed mean) and the serving export's weights on disk (the "
             f"SavedModel's variables/, biases included; seed 0, first optimizer). PEP at d = {sizes['pep_dim']}: "
             "tickets are the masks PEP's pruning reached; magnitude tickets, for reference, keep the trained full "
             "model's largest entries; frequency tickets keep each id's first columns, more for frequent ids "
             f"(frequency_mask, exponent {_frequency_exponent(sizes)}). Every ticket is retrained from its source "
             f"run's tables after {sizes.get('rewind_epochs', 0)} epoch(s) (0: the initial values).", ""]
    for task in ("rating", "ctr"):
        results = sizes.get(task)
        if not results:
            continue
        optimizers = list(results)
        first = results[optimizers[0]]
        rows = [("biases only", lambda r: r["biases_only"])]
        rows += [(f"plain d={d}", lambda r, d=d: r["plain"][d]) for d in sorted(first["plain"], key=int)]
        mlet_rows = sorted(first["mlet"].items(), key=lambda item: int(item[0]))
        rows += [(f"MLET d={d} (inner {run.get('inner_dim', sizes.get('mlet_inner_dim'))})",
                  lambda r, d=d: r["mlet"][d]) for d, run in mlet_rows]
        for kind, name in (("retrained", "PEP ticket"), ("magnitude", "magnitude ticket"),
                           ("frequency", "frequency ticket")):
            reached = {target for optimizer in optimizers for target in results[optimizer].get("pep", {}).get(kind, {})}
            for target in sorted(reached, key=float):
                rows.append((f"{name}, target {target}",
                             lambda r, kind=kind, target=target: r["pep"][kind].get(target)))
        lines += [f"**{EMBEDDING_SIZE_LABELS[task]}**", "",
                  "| model | embedding parameters (first column's) | serving weights | "
                  + " | ".join(optimizers) + " |",
                  "|---|---|---|" + "---|" * len(optimizers)]
        for name, pick in rows:
            reference = next(pick(results[optimizer]) for optimizer in optimizers if pick(results[optimizer]))
            cells = [_embedding_size_cell(pick(results[optimizer]), seeds) for optimizer in optimizers]
            size = reference.get("serving_bytes")
            lines.append(f"| {name} | {reference['parameters']:,.0f} | "
                         f"{'' if size is None else f'{size / 1024:,.0f} KiB'} | " + " | ".join(cells) + " |")
        lines.append("")
    targets = sizes.get("targets", {})
    for task, by_optimizer in targets.items():
        for optimizer, checks in by_optimizer.items():
            shown = [f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}"
                     for key, value in checks.items()]
            lines.append(f"* {task}, {optimizer}: " + ", ".join(shown))
    lines.append("")
    for figure in ("mlet", "pep"):
        lines += image(results_dir, readme_dir, f"embedding_size_{figure}.png", f"embedding size, {figure}")
    return lines


def _frequency_exponent(sizes):
    """The frequency tickets' exponent, as recorded in their runs ("–" where none was measured)."""
    exponents = {run["exponent"] for task in ("rating", "ctr") for result in sizes.get(task, {}).values()
                 for run in result.get("pep", {}).get("frequency", {}).values()}
    return ", ".join(f"{exponent:g}" for exponent in sorted(exponents)) or "–"


def _embedding_size_cell(run, seeds):
    """``mean ± std (lr, sparsity)`` of one embedding-size run over its seeds (of ``seeds`` run)."""
    if run is None:
        return "not reached"
    if run["test"] is None:
        return "diverged"
    spread = [value for value in run.get("test_seeds", []) if value is not None]
    text = f"{run['test']:.4f}" + (f" ± {statistics.stdev(spread):.4f}" if len(spread) > 1 else "")
    details = [f"lr {run['learning_rate']:g}"] + ([f"sparsity {run['sparsity']:.3f}"] if "sparsity" in run else [])
    if len(spread) < seeds:  # a PEP target some seeds did not reach
        details.append(f"{len(spread)} of {seeds} seeds")
    return f"{text} ({', '.join(details)})"


def choose_estimate_sections(choose):
    lines = ["### Choice of CounterSGD's defaults", "",
             f"`benchmarks/choose_estimate.py`: logistic matrix factorisation on the CTR view, {choose['epochs']} "
             f"epochs, rate chosen on validation from 5 points, test AUC at the validation-best epoch over "
             f"{choose['seeds']} seed(s).", ""]
    for dataset, rows in choose["results"].items():
        lines += [f"**{dataset}**", "", "| configuration | lr | test AUC |", "|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['configuration']} | {row['learning_rate']:g} | "
                         f"{row['test_auc_mean']:.4f} ± {row['test_auc_std']:.4f} |")
        lines.append("")
    return lines


# ---- The MovieLens examples (benchmarks/examples.py). ----

DATASET_LABELS = {"synthetic": "synthetic", "ml-100k": "ML-100K"}
EXAMPLE_TASKS = {"retrieval": "retrieval", "rating": "ranking `--task=rating`", "ctr": "ranking `--task=ctr`"}
# Per task, the test metrics of the every-optimizer tables: (the key in a run's metrics, the label).
EXAMPLE_METRICS = {"retrieval": (("recall@10", "r@10"), ("recall@100", "r@100")),
                   "rating": (("rmse", "RMSE ↓"), ("auc", "AUC")),
                   "ctr": (("auc", "AUC"), ("log_loss", "log-loss ↓"))}
VERDICTS = {"within noise of": "within noise", "better than": "better", "worse than": "worse"}


def find_run(examples, group=None, **fields):
    """The run (of `group`, if given) whose settings (examples.json's "run") have `fields`' values, or None."""
    return next((record for record in examples["runs"] if (group is None or group in record["groups"])
                 and all(record["run"][key] == value for key, value in fields.items())), None)


def shown_metrics(record):
    """'recall@10 0.0408, ...': every figure a run's metrics JSON holds (counts left out), or its failure."""
    if record["status"] != "ok":
        return record["status"]
    return ", ".join(f"{name} {value:.4f}" for name, value in record["metrics"].items() if isinstance(value, float))


def run_rows(records):
    """A table of runs: each one's command, rate, test metrics, training time."""
    lines = ["| command | lr | test metrics | train seconds |", "|---|---|---|---|"]
    for record in records:
        if record["status"] == "ok":
            lines.append(f"| `{record['command']}` | {record['config']['learning_rate']:g} | {shown_metrics(record)} | "
                         f"{record['train_seconds']:.1f} |")
        else:
            lines.append(f"| `{record['command']}` | | {shown_metrics(record)} | |")
    return lines + [""]


def seed_stats(records, metric):
    """{"mean", "std", "n"} of `metric` over the runs that finished (sample std; 0 for one run), or None."""
    values = [record["metrics"][metric] for record in records if record["status"] == "ok"]
    if not values:
        return None
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def optimizer_tables(examples):
    """Per task, every optimizer's test metrics at its default rate on each data set."""
    settings = examples["settings"]
    datasets = settings["datasets"]
    lines = []
    for task in settings["tasks"]:
        metrics = EXAMPLE_METRICS[task]
        lines += [f"| {EXAMPLE_TASKS[task]} | lr | " + " | ".join(f"{DATASET_LABELS[dataset]} {label}"
                                                               for dataset in datasets for _, label in metrics) + " |",
                  "|---|---|" + "---|" * (len(datasets) * len(metrics))]
        for optimizer in settings["optimizers"]:
            records = [find_run(examples, "optimizers", optimizer=optimizer, dataset=dataset,
                                task=None if task == "retrieval" else task) for dataset in datasets]
            finished = [record for record in records if record and record["status"] == "ok"]
            rates = sorted({f"{record['config']['learning_rate']:g}" for record in finished})
            cells = [(f"{record['metrics'][key]:.4f}" if record in finished else "failed") if record else "–"
                     for record in records for key, _ in metrics]
            lines.append(f"| {optimizer} | {', '.join(rates)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def logq_runs(examples, dataset, optimizer, logq):
    """The log-Q group's runs (one per seed) of `optimizer` on `dataset` with correction `logq`."""
    return [record for record in examples["runs"] if "logq" in record["groups"] and record["run"]["dataset"] == dataset
            and record["run"]["optimizer"] == optimizer and record["run"]["logq"] == logq]


def logq_table(examples):
    """Each optimizer's retrieval recall with each log-Q correction, over the seeds, against none."""
    settings = examples["settings"]
    lines = ["| data | optimizer | log-Q | recall@10 | recall@100 | recall@100 against none's |",
             "|---|---|---|---|---|---|"]
    for dataset in settings["datasets"]:
        for optimizer, corrections in settings["logq_corrections"].items():
            runs = {logq: logq_runs(examples, dataset, optimizer, logq) for logq in corrections}
            none = seed_stats(runs["none"], "recall@100")
            for logq, records in runs.items():
                if not records:
                    continue
                recall = seed_stats(records, "recall@100")
                against = "–"
                if logq != "none" and none and recall:
                    verdict, difference, noise = compare(recall, none)
                    against = f"{signed(difference, 4)} ({VERDICTS[verdict]}, noise ±{noise:.4f})"
                lines.append(f"| {DATASET_LABELS[dataset]} | {optimizer} | {logq} | "
                             f"{mean_std(seed_stats(records, 'recall@10'))} | {mean_std(recall)} | {against} |")
    return lines + [""]


def counter_against_counts(examples):
    """Per data set and optimizer with both: the counters' log-Q estimate against the training split's counts."""
    lines = []
    for dataset in examples["settings"]["datasets"]:
        for optimizer, corrections in examples["settings"]["logq_corrections"].items():
            stats = {logq: seed_stats(logq_runs(examples, dataset, optimizer, logq), "recall@100")
                     for logq in ("counter", "counts") if logq in corrections}
            if len(stats) == 2 and all(stats.values()):
                verdict, difference, noise = compare(stats["counter"], stats["counts"])
                lines.append(f"* {DATASET_LABELS[dataset]}, {optimizer}: recall@100 with the counters' estimate is "
                             f"{verdict} the training split's counts' ({difference:+.4f}, noise ±{noise:.4f}).")
    return lines + [""] if lines else []


def examples_sections(examples):
    settings = examples["settings"]
    records = examples["runs"]
    reference = settings["reference_dataset"]
    sizes = [f"`--{name}={settings[name]}`" for name in ("num_ratings", "epochs") if settings[name]]
    finished = [record for record in records if record["status"] == "ok"]
    defaults = (f"d = {finished[0]['config']['embedding_dim']}, {finished[0]['config']['epochs']} epoch(s), batch "
                + " and ".join(f"{size} ({example})" for example, size in
                               {r["run"]["example"]: r["config"]["batch_size"] for r in finished}.items())
                if finished else "(no run finished)")
    data = "; ".join(f"{DATASET_LABELS[dataset]}: " + (f"`--data_dir={settings['data_dir']}`" if dataset == "ml-100k"
                                                        else "the built-in set, no data flag")
                     for dataset in settings["datasets"])
    lines = ["### MovieLens examples", "",
             f"`benchmarks/examples.py` (`make bench-examples`) on {examples['date']}: the programs "
             "`examples/movielens_retrieval.py` and `examples/movielens_ranking.py` run as a user runs them, from the "
             "repository root, with the commands shown (each given `--metrics_json` too, whose file its figures "
             "come from; README's quickstart command, whose output README shows, is run without it and read where "
             "the example writes by default); "
             f"{len(records)} runs, {settings['parallel']} at a time on {settings['cpus']} CPU cores, "
             f"{examples['seconds'] / 60:.0f} minutes, so train seconds are those of a shared machine. The examples' "
             f"defaults: counter_sgd, {defaults}, seed 0, split 80/10/10; data: {data}."
             + (f" Added to every command: {', '.join(sizes)}." if sizes else ""), ""]
    if settings["quick"]:
        lines += ["**Quick run** (`--quick`): a smoke test of the examples, not figures to quote.", ""]
    lines += [f"Skipped: {dataset} ({why})." for dataset, why in examples.get("skipped", {}).items()]
    default_runs = [find_run(examples, "optimizers", optimizer="counter_sgd", dataset=dataset,
                             task=None if task == "retrieval" else task)
                    for dataset in settings["datasets"] for task in settings["tasks"]]
    default_runs = [record for record in default_runs if record]  # none where counter_sgd was not measured
    if default_runs:
        lines += ["#### Default runs", "", "counter_sgd, the examples' default optimizer, at its default rate:",
                  ""] + run_rows(default_runs)
    if "optimizers" in settings["groups"]:
        lines += ["#### Every optimizer at its default rate", "",
                  "`--optimizer=NAME` added to the commands above; test metrics, seed 0:", ""]
        lines += optimizer_tables(examples)
    embedding_runs = [record for record in records if "embeddings" in record["groups"]]
    if embedding_runs:
        baselines = []  # each kind's command without --embedding (nor a rate of its own), once per task
        for record in embedding_runs:
            baseline = find_run(examples, **dict(record["run"], embedding="table", learning_rate=None))
            if baseline and baseline not in baselines:
                baselines.append(baseline)
        lines += ["#### Other embedding kinds", "",
                  f"`--embedding`, counter_sgd on {DATASET_LABELS[reference]}, against plain tables (the commands "
                  "without `--embedding`); the rates were chosen per optimizer, not per kind (mlet's retrieval has "
                  "its own: the default diverges there):", ""]
        lines += run_rows(baselines + embedding_runs)
    excluded = find_run(examples, "exclude_rated", exclude_rated=True)
    if excluded:
        baseline = find_run(examples, **dict(excluded["run"], exclude_rated=False))
        lines += ["#### Excluding each user's rated movies", "",
                  f"`--exclude_rated` (each user's training movies left out of their ranking), counter_sgd on "
                  f"{DATASET_LABELS[reference]}:", ""] + run_rows([record for record in (baseline, excluded) if record])
    if any("logq" in record["groups"] for record in records):
        seeds = ", ".join(map(str, settings["seeds"]))
        lines += ["#### Log-Q correction from the counters", "",
                  "Retrieval at each optimizer's default rate with each correction (`--logq=none|counter|counts`; the "
                  "one `--logq=auto` picks, counter where the optimizer keeps counters, else counts, is the command "
                  f"without `--logq`), test recall mean ± std over seeds {seeds} (`--seed`); against none: the "
                  "difference of means, within noise when at most two standard errors.", ""]
        lines += logq_table(examples) + counter_against_counts(examples)
    failed = [record for record in records if record["status"] != "ok"]
    if failed:
        lines += ["Failed runs: " + "; ".join(f"`{record['command']}` ({record['status']})" for record in failed)
                  + ".", ""]
    return lines


def quickstart_block(examples):
    """README's quickstart output from the quickstart run of examples.json: the lines before
    training, "..." for Keras' progress, then the report; or None without that run."""
    record = examples and next((record for record in examples["runs"] if "quickstart" in record["groups"]), None)
    if not record or record["status"] != "ok":
        return None
    lines = record["stdout"].rstrip("\n").split("\n")
    training = next(i for i, line in enumerate(lines) if not line.strip() or line.startswith("Epoch "))
    example = os.path.splitext(os.path.basename(record["command"].split()[0]))[0]
    report = next(i for i, line in enumerate(lines) if line.startswith(f"{example} on "))
    settings = examples["settings"]
    return (["```"] + lines[:training] + ["..."] + lines[report:] + ["```", "",
            f"Printed by `{record['command']}`",
            f"as `make bench-examples` ran it on {examples['date']} ({settings['parallel']} runs at a time on "
            f"{settings['cpus']} CPU cores; `benchmarks/results/examples.json`)."])


RESULT_FILES = ("run_all", "quality", "state_memory", "step_time", "keras3_step_time", "first_step", "dynamic_scale",
                "cluster", "embedding_size", "choose_estimate", "examples")


def render(results_dir, readme_dir):
    """The section's Markdown from the JSON files in `results_dir` (image links relative to the
    target file's directory)."""
    data = {name: load(results_dir, name) for name in RESULT_FILES}
    where = (results_dir, readme_dir)
    sections = [  # (name, its lines or None when its JSON is absent)
        ("quality", data["quality"] and quality_sections(data["quality"], *where)),
        ("learning-rate robustness", data["quality"] and robustness_sections(data["quality"], *where)),
        ("big batches", data["quality"] and big_batch_sections(data["quality"])),
        ("rare ids", data["quality"] and rare_id_sections(data["quality"], *where)),
        ("memory", (data["state_memory"] or data["quality"])
         and memory_sections(data["state_memory"], data["quality"])),
        ("step time", data["step_time"] and step_time_sections(data["step_time"], *where)),
        ("Keras 3 step time", data["keras3_step_time"] and keras3_step_sections(data["keras3_step_time"])),
        ("first step", data["first_step"] and first_step_sections(data["first_step"], *where)),
        ("TFRA at scale", data["dynamic_scale"] and dynamic_sections(data["dynamic_scale"], *where)),
        ("training on a cluster", data["cluster"] and cluster_sections(data["cluster"], *where)),
        ("embedding size", data["embedding_size"] and embedding_size_sections(data["embedding_size"], *where)),
        ("choice of defaults", data["choose_estimate"] and choose_estimate_sections(data["choose_estimate"])),
        ("MovieLens examples", data["examples"] and examples_sections(data["examples"])),
    ]
    lines = header(data["run_all"], *where) + [""]
    for _, section_lines in sections:
        lines += section_lines or []
    missing = [name for name, section_lines in sections if not section_lines]
    if missing:
        lines += [f"No results yet for: {', '.join(missing)}.", ""]
    return "\n".join(lines)


def rewrite(path, section, begin, end, what):
    """Puts `section` between `path`'s `begin` and `end` lines; with --check, only compares. Returns
    False where --check finds the file's `what` (its name in messages) out of date."""
    with open(path) as f:
        text = f.read()
    updated = replace_section(text, section, begin, end)
    if FLAGS.check:
        if updated != text:
            print(f"{path}: the {what} differs from {FLAGS.results_dir}'s JSON; run "
                  "`.venv/bin/python benchmarks/readme_results.py`.", file=sys.stderr)
            return False
        print(f"{path}: the {what} matches the JSON.")
        return True
    with open(path, "w") as f:
        f.write(updated)
    print(f"Rewrote the {what} of {path} from {FLAGS.results_dir}.")
    return True


def quickstart_target(readme):
    """The file whose quickstart output is rewritten, or None: --quickstart_readme, by default
    README.md beside the default --readme (another --readme is a copy: the README stays as it is)."""
    if FLAGS.quickstart_readme is not None:
        return FLAGS.quickstart_readme and os.path.abspath(FLAGS.quickstart_readme)
    return os.path.abspath(README) if os.path.normpath(readme) == os.path.abspath(BENCHMARKS_DOC) else None


def main(argv):
    del argv
    results_dir, readme = os.path.abspath(FLAGS.results_dir), os.path.abspath(FLAGS.readme)
    current = [rewrite(readme, render(results_dir, os.path.dirname(readme)), BEGIN, END, "benchmark section")]
    quickstart_readme = quickstart_target(readme)
    if quickstart_readme:
        block = quickstart_block(load(results_dir, "examples"))
        if block is None:
            print(f"{quickstart_readme}: no quickstart run in {results_dir}/examples.json; its quickstart output is "
                  "left as it is.")
        else:
            current.append(rewrite(quickstart_readme, "\n".join(block), QUICKSTART_BEGIN, QUICKSTART_END,
                                   "quickstart output"))
    if not all(current):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

# Two commands on a fresh machine with python3.11, python3.12 and python3.13 (found through pyenv
# when not on PATH) and a compiler: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The current stack, on each of these Pythons (found through pyenv when not on PATH): TensorFlow
# 2.21, Keras 3 and tf_keras 2.21, JAX; the core only (TFRA and TFRS are the pinned stack's).
CURRENT_PYTHONS := 3.12 3.13
python_for = $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/$(1)*/bin/python$(1)) $(shell command -v python$(1)))

.PHONY: install demo test test-pinned clean bench-keras3 bazel-op bench-speed bench-dynamic bench bench-quick bench-embedding-size

install: $(STAMP)

# Re-installs only when the pinned files or the op's C++ sources change; the install builds the op.
$(STAMP): requirements.txt requirements-dev.txt setup.py $(wildcard tf_freqsgd/cc/*/*)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tf_freqsgd needs Python 3.11 (TFRA 0.8.1 ships a cp311 wheel only); set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The TFRS retrieval example on the built-in synthetic data (CounterSGD, 5 epochs), exported for
# TF Serving, then served in a fresh process that imports TensorFlow alone (examples/serve_demo.py).
# The optimizers' CTR comparison of earlier versions: $(PY) examples/demo.py.
DEMO_DIR := build/demo
demo: install
	$(PY) examples/movielens_retrieval.py --export_dir=$(DEMO_DIR)/retrieval/1 --metrics_json=$(DEMO_DIR)/retrieval_metrics.json
	env -u TF_USE_LEGACY_KERAS $(PY) examples/serve_demo.py --export_dir=$(DEMO_DIR)/retrieval/1 --users=1,2,3

# Every tested stack (about 30 minutes on 2 cores with the installs). Horovod's test has its own
# target, test-horovod: its venv and build take 11 more minutes, past CI's 40-minute budget.
test: test-pinned $(addprefix test-,$(CURRENT_PYTHONS))

# The pinned stack: everything on tf_keras (TFRA, TFRS, examples, benchmarks), then the Keras 3
# front on its TensorFlow 2.16.
test-pinned: install
	TF_USE_LEGACY_KERAS=1 $(PY) -m pytest -q tests
	TF_USE_LEGACY_KERAS=0 $(PY) -m pytest -q tests/keras3

# The current stack on Python 3.X (make test-3.12): the core on Keras 3 (TensorFlow and JAX
# backends) and on tf_keras 2.21, in .venv3.X.
CORE_TESTS := tests/optimizers tests/ops/test_fused_op.py tests/ops/test_loader.py tests/test_import.py \
	tests/reliability/test_counter_limits.py tests/reliability/test_step_checks.py \
	tests/reliability/test_arguments.py tests/reliability/test_restore_settings.py
test-%: install-%
	TF_USE_LEGACY_KERAS=0 .venv$*/bin/python -m pytest -q tests/keras3
	TF_USE_LEGACY_KERAS=0 KERAS_BACKEND=jax .venv$*/bin/python -m pytest -q tests/keras3
	TF_USE_LEGACY_KERAS=1 .venv$*/bin/python -m pytest -q $(CORE_TESTS)

install-%: .venv%/.installed ;
# Kept after the run (make deletes a pattern rule's intermediate files): the next run reuses the venv.
.PRECIOUS: .venv%/.installed

.venv%/.installed: requirements-keras3.txt setup.py $(wildcard tf_freqsgd/cc/*/*)
	@test -n "$(call python_for,$*)" || { echo "make test needs Python $* for the current stack: install it (pyenv install $*)" >&2; exit 1; }
	test -x .venv$*/bin/python || $(call python_for,$*) -m venv .venv$*
	.venv$*/bin/python -m pip install -q --upgrade pip
	.venv$*/bin/python -m pip install -q -r requirements-keras3.txt
	.venv$*/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Horovod (Gloo, no MPI) built from source against the pinned TensorFlow, in .venv-horovod: TFRA
# changes behaviour when horovod is importable, so .venv stays without it (requirements-horovod.txt).
HOROVOD_VENV := .venv-horovod
HOROVOD_BUILD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
	HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_CPU_OPERATIONS=GLOO MAKEFLAGS=-j2
.PHONY: install-horovod test-horovod
install-horovod: $(HOROVOD_VENV)/.installed ;

$(HOROVOD_VENV)/.installed: requirements-horovod.txt requirements.txt requirements-dev.txt setup.py $(wildcard tf_freqsgd/cc/*/*)
	test -x $(HOROVOD_VENV)/bin/python || $(PYTHON) -m venv $(HOROVOD_VENV)
	$(HOROVOD_VENV)/bin/python -m pip install -q --upgrade pip
	$(HOROVOD_VENV)/bin/python -m pip install -q -r requirements-dev.txt
	$(HOROVOD_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	$(HOROVOD_BUILD_ENV) $(HOROVOD_VENV)/bin/python -m pip install -q --no-build-isolation --no-cache-dir -r requirements-horovod.txt
	touch $@

# Two Horovod ranks on localhost train a TFRA all-to-all embedding as one process does.
test-horovod: install-horovod
	TF_USE_LEGACY_KERAS=1 $(HOROVOD_VENV)/bin/python -m pytest -q tests/cluster/test_horovod.py

# Step and update time of every optimizer on 1M x 64 and 10M x 16 tables (about 10 minutes);
# writes benchmarks/results/step_time.{json,png} and prints the README's table.
bench-speed: install
	$(PY) benchmarks/step_time.py

# Step time with Keras 3 against its own SGD and Adagrad, on the current stack (.venv3.12, TF 2.21);
# writes benchmarks/results/keras3_step_time.json (a few minutes).
bench-keras3: install-3.12
	.venv3.12/bin/python benchmarks/keras3_step_time.py

# Steps/s and bytes sent a step for CounterSGD, SGD and Adagrad under ParameterServerStrategy (1 worker,
# 2 PS) and MultiWorkerMirroredStrategy (2 workers), processes on localhost (a few minutes); writes
# benchmarks/results/cluster.{json,png}.
.PHONY: bench-cluster
bench-cluster: install
	$(PY) benchmarks/cluster.py

# Every benchmark, each in its own process (about 4 hours on 2 cores), then docs/benchmarks.md's
# results section and README.md's quickstart output regenerated from benchmarks/results/*.json
# (benchmarks/run_all.py).
bench: install
	$(PY) benchmarks/run_all.py

# The same at reduced sizes (a few minutes); results and regenerated copies of docs/benchmarks.md and
# README.md in build/bench-quick/.
bench-quick: install
	$(PY) benchmarks/run_all.py --quick

# Step time and peak memory of every optimizer on TFRA dynamic tables of 1e5, 1e6 and 1e7 ids, each
# in its own process (about 10 minutes); writes benchmarks/results/dynamic_scale.{json,png}.
bench-dynamic: install
	$(PY) benchmarks/dynamic_scale.py

# MLET and PEP against plain tables on MovieLens 100K (rating RMSE, CTR AUC), CounterSGD and
# Adagrad (about 33 minutes); writes benchmarks/results/embedding_size{.json,_mlet.png,_pep.png}.
bench-embedding-size: install
	$(PY) benchmarks/embedding_size.py

# The MovieLens examples run as a user runs them (every optimizer, data set and task, log-Q, embedding
# kinds, --exclude_rated, README's quickstart command; about 22 minutes on 2 cores); writes
# benchmarks/results/examples.json, whose tables and quickstart output readme_results.py renders.
.PHONY: bench-examples
bench-examples: install
	$(PY) benchmarks/examples.py

# The op built by Bazel 4.2.3 offline against .venv's TensorFlow, CPU kernels only; load it with
# TF_FREQSGD_OPS_LIBRARY. Copied out of bazel-bin, which follows the last build's configuration.
bazel-op: install
	@command -v bazel >/dev/null || { echo "make bazel-op needs Bazel: apt-get install -y bazel-bootstrap bazel-platforms" >&2; exit 1; }
	$(PY) build_deps/configure_bazel.py
	bazel --bazelrc=build/bazel_deps/bazelrc build -c opt //:_freqsgd_ops.so
	install -D -m 0755 build/bazel-bin/_freqsgd_ops.so build/bazel-op/_freqsgd_ops.so

clean:
	rm -rf $(VENV) $(addprefix .venv,$(CURRENT_PYTHONS)) $(HOROVOD_VENV) build *.egg-info

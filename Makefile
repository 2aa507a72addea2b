# Two commands on a fresh machine with python3.11, python3.12 (found through pyenv when not on
# PATH) and a compiler: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The second tested stack: Python 3.12, TensorFlow 2.21, Keras 3 and tf_keras 2.21, JAX.
PYTHON312 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
VENV312 := .venv312
PY312 := $(VENV312)/bin/python
STAMP312 := $(VENV312)/.installed

.PHONY: install install-312 demo test test-pinned test-312 clean bench-keras3 bazel-op bench-speed bench-dynamic bench bench-quick bench-embedding-size

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
	env -u TF_USE_LEGACY_KERAS $(PY) examples/serve_demo.py --export_dir=$(DEMO_DIR)/retrieval/1 --users=0,1,2

# Both stacks (about 10 minutes on 2 cores after the installs).
test: test-pinned test-312

# The pinned stack: everything on tf_keras (TFRA, TFRS, examples, benchmarks), then the Keras 3
# front on its TensorFlow 2.16.
test-pinned: install
	TF_USE_LEGACY_KERAS=1 $(PY) -m pytest -q tests
	TF_USE_LEGACY_KERAS=0 $(PY) -m pytest -q tests/keras3

# The current stack: the core on Keras 3 (TensorFlow and JAX backends) and on tf_keras 2.21.
CORE_TESTS := tests/optimizers tests/ops/test_fused_op.py tests/ops/test_loader.py tests/test_import.py \
	tests/reliability/test_counter_limits.py tests/reliability/test_step_checks.py \
	tests/reliability/test_arguments.py tests/reliability/test_restore_settings.py
test-312: install-312
	TF_USE_LEGACY_KERAS=0 $(PY312) -m pytest -q tests/keras3
	TF_USE_LEGACY_KERAS=0 KERAS_BACKEND=jax $(PY312) -m pytest -q tests/keras3
	TF_USE_LEGACY_KERAS=1 $(PY312) -m pytest -q $(CORE_TESTS)

install-312: $(STAMP312)

$(STAMP312): requirements-keras3.txt setup.py $(wildcard tf_freqsgd/cc/*/*)
	@test -n "$(PYTHON312)" || { echo "make test needs Python 3.12 for its second stack: set PYTHON312=/path/to/python3.12" >&2; exit 1; }
	test -x $(PY312) || $(PYTHON312) -m venv $(VENV312)
	$(PY312) -m pip install -q --upgrade pip
	$(PY312) -m pip install -q -r requirements-keras3.txt
	$(PY312) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP312)

# Step and update time of every optimizer on 1M x 64 and 10M x 16 tables (about 10 minutes);
# writes benchmarks/results/step_time.{json,png} and prints the README's table.
bench-speed: install
	$(PY) benchmarks/step_time.py

# Step time with Keras 3 against its own SGD and Adagrad, on the current stack (.venv312, TF 2.21);
# writes benchmarks/results/keras3_step_time.json (a few minutes).
bench-keras3: install-312
	$(PY312) benchmarks/keras3_step_time.py

# Every benchmark, each in its own process (about 30 minutes on 2 cores), then README.md's results
# section regenerated from benchmarks/results/*.json (benchmarks/run_all.py).
bench: install
	$(PY) benchmarks/run_all.py

# The same at reduced sizes (a few minutes); results and the regenerated README in build/bench-quick/.
bench-quick: install
	$(PY) benchmarks/run_all.py --quick

# Step time and peak memory of every optimizer on TFRA dynamic tables of 1e5, 1e6 and 1e7 ids, each
# in its own process (about 10 minutes); writes benchmarks/results/dynamic_scale.{json,png}.
bench-dynamic: install
	$(PY) benchmarks/dynamic_scale.py

# MLET and PEP against plain tables on MovieLens 100K (rating RMSE, CTR AUC), CounterSGD and
# Adagrad (about 11 minutes); writes benchmarks/results/embedding_size{.json,_mlet.png,_pep.png}.
bench-embedding-size: install
	$(PY) benchmarks/embedding_size.py

# The op built by Bazel 4.2.3 offline against .venv's TensorFlow, CPU kernels only; load it with
# TF_FREQSGD_OPS_LIBRARY. Copied out of bazel-bin, which follows the last build's configuration.
bazel-op: install
	@command -v bazel >/dev/null || { echo "make bazel-op needs Bazel: apt-get install -y bazel-bootstrap bazel-platforms" >&2; exit 1; }
	$(PY) build_deps/configure_bazel.py
	bazel --bazelrc=build/bazel_deps/bazelrc build -c opt //:_freqsgd_ops.so
	install -D -m 0755 build/bazel-bin/_freqsgd_ops.so build/bazel-op/_freqsgd_ops.so

clean:
	rm -rf $(VENV) $(VENV312) build *.egg-info

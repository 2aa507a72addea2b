# Two commands on a fresh machine with python3.11 and a compiler: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test clean bazel-op bench-speed bench-dynamic

install: $(STAMP)

# Re-installs only when the pinned files or the op's C++ sources change; the install builds the op.
$(STAMP): requirements.txt requirements-dev.txt setup.py $(wildcard tf_freqsgd/cc/*/*)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tf_freqsgd needs Python 3.11 (TFRA 0.8.1 ships a cp311 wheel only); set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest -q tests

# Step and update time of every optimizer on 1M x 64 and 10M x 16 tables (about 10 minutes);
# writes benchmarks/results/step_time.{json,png} and prints the README's table.
bench-speed: install
	$(PY) benchmarks/step_time.py

# Step time and peak memory of every optimizer on TFRA dynamic tables of 1e5, 1e6 and 1e7 ids, each
# in its own process (about 10 minutes); writes benchmarks/results/dynamic_scale.{json,png}.
bench-dynamic: install
	$(PY) benchmarks/dynamic_scale.py

# The op built by Bazel 4.2.3 offline against .venv's TensorFlow, CPU kernels only; load it with
# TF_FREQSGD_OPS_LIBRARY. Copied out of bazel-bin, which follows the last build's configuration.
bazel-op: install
	@command -v bazel >/dev/null || { echo "make bazel-op needs Bazel: apt-get install -y bazel-bootstrap bazel-platforms" >&2; exit 1; }
	$(PY) build_deps/configure_bazel.py
	bazel --bazelrc=build/bazel_deps/bazelrc build -c opt //:_freqsgd_ops.so
	install -D -m 0755 build/bazel-bin/_freqsgd_ops.so build/bazel-op/_freqsgd_ops.so

clean:
	rm -rf $(VENV) build *.egg-info

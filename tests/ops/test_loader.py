"""Loading the fused op: availability, the TF_FREQSGD_OPS switch, and the fallback."""

import shutil
import warnings

import pytest
import tensorflow as tf

from tf_freqsgd.ops import loader


@pytest.fixture
def fresh_loader(monkeypatch):
    loader._load.cache_clear()
    loader._warn_once.cache_clear()
    yield monkeypatch
    loader._load.cache_clear()
    loader._warn_once.cache_clear()


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler: setup.py cannot build the op")
def test_the_installed_op_loads():
    assert loader.custom_op_available()
    assert "_tf" + tf.__version__.replace(".", "_") in loader.library_path()


def test_tf_forces_the_pure_tf_path(fresh_loader):
    fresh_loader.setenv(loader.PATH_ENV, "tf")
    assert loader.fused_ops() is None


def test_unknown_choice_is_an_error(fresh_loader):
    fresh_loader.setenv(loader.PATH_ENV, "gpu")
    with pytest.raises(ValueError, match="TF_FREQSGD_OPS must be one of"):
        loader.fused_ops()


def test_missing_library_falls_back_with_one_warning(fresh_loader, tmp_path):
    fresh_loader.setattr(loader, "_HERE", str(tmp_path))
    fresh_loader.setenv(loader.PATH_ENV, "auto")
    with pytest.warns(RuntimeWarning, match="pure-TensorFlow path.*no library"):
        assert loader.fused_ops() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loader.fused_ops() is None  # no second warning
    assert not loader.custom_op_available()


def test_library_for_another_tensorflow_is_not_loaded(fresh_loader, tmp_path):
    (tmp_path / "_freqsgd_ops_tf2_15_0.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not a library")
    fresh_loader.setattr(loader, "_HERE", str(tmp_path))
    fresh_loader.setenv(loader.PATH_ENV, "custom")
    with pytest.raises(RuntimeError, match="built for another TensorFlow.*make install"):
        loader.fused_ops()


def test_broken_library_falls_back(fresh_loader, tmp_path):
    import tensorflow as tf

    tag = loader._library_tag(tf.__version__)
    (tmp_path / f"{tag}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not a library")
    fresh_loader.setattr(loader, "_HERE", str(tmp_path))
    fresh_loader.setenv(loader.PATH_ENV, "auto")
    with pytest.warns(RuntimeWarning, match="does not load"):
        assert loader.fused_ops() is None

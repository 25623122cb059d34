"""``losskit.core.arrays.quiet``: NumPy's floating-point warnings off inside a kernel, the
caller's error state untouched outside it, per thread (NumPy 2: the error-state context
variable set directly; otherwise ``np.errstate``)."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from losskit.core import arrays


def _warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            np.log(np.zeros(1))
        except RuntimeWarning:
            return True
    return False


@pytest.mark.parametrize("direct", [True, False], ids=["context-variable", "np.errstate"])
def test_quiet_silences_inside_and_restores_outside(direct, monkeypatch):
    if not direct:
        monkeypatch.setattr(arrays, "_extobj_contextvar", None)
    elif arrays._extobj_contextvar is None:
        pytest.skip("this NumPy has no error-state context variable")
    with np.errstate(divide="raise"):
        before = np.geterr()
        with arrays.quiet():
            assert set(np.geterr().values()) == {"ignore"}
            assert not _warns()
            with arrays.quiet():  # nested
                np.float32(3e38) * np.float32(10)
            assert set(np.geterr().values()) == {"ignore"}
        assert np.geterr() == before
        with pytest.raises(FloatingPointError):
            np.log(np.zeros(1))
    assert _warns()


def test_quiet_in_one_thread_leaves_another_alone():
    inside, other = threading.Event(), {}
    done = threading.Event()

    def quiet_thread():
        with arrays.quiet():
            inside.set()
            done.wait(5)

    t = threading.Thread(target=quiet_thread)
    t.start()
    inside.wait(5)
    other["warns"] = _warns()  # this thread's state: warnings on
    done.set()
    t.join()
    assert other["warns"]


def test_quiet_exits_cleanly_on_an_exception():
    before = np.geterr()
    with pytest.raises(KeyError):
        with arrays.quiet():
            raise KeyError("x")
    assert np.geterr() == before

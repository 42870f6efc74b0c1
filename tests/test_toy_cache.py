"""Toy bases shared between processes: one that another process is training is waited for, not trained twice."""

from __future__ import annotations

import threading

from prefkit.toy import _exclusive


def test_a_second_holder_of_the_same_base_waits_until_the_first_is_done(tmp_path):
    order: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def first():
        with _exclusive(tmp_path / "base", True):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second():
        inside.wait(10)
        with _exclusive(tmp_path / "base", True):  # a separate open file: flock makes it wait, as another process
            order.append("second in")

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    b.join(0.5)  # without the lock it would be in by now
    release.set()
    a.join()
    b.join()
    assert order == ["first in", "first out", "second in"]


def test_other_bases_do_not_wait(tmp_path):
    with _exclusive(tmp_path / "one", True), _exclusive(tmp_path / "two", True), _exclusive(tmp_path / "x", False):
        pass
    assert (tmp_path / "one.lock").exists() and not (tmp_path / "x.lock").exists()

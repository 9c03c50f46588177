"""The one background-worker pattern (echoquality_gui.common.workers) on a real QThread and event loop:
a generator's yields arrive as progress and its return value as the result, an exception as
the error; an aborted (replaced) worker never delivers; cancel() stops the work but keeps its
outcome."""
from __future__ import annotations

import threading
import time

from echoquality_gui.common.workers import Latest, ProcessRelay, Worker


def _collect(worker: Worker) -> dict[str, list]:
    got: dict[str, list] = {"yielded": [], "returned": [], "errored": []}
    worker.connect(yielded=got["yielded"].append, returned=got["returned"].append,
                   errored=got["errored"].append)
    return got


def test_generator_yields_arrive_in_order_then_its_return_value(qtbot):
    def steps(n):
        for i in range(n):
            yield i
            yield None  # a heartbeat: not delivered
        return f"{n} done"

    worker = Worker(steps, 3)
    got = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    qtbot.waitUntil(lambda: got["returned"] == ["3 done"], timeout=5000)
    assert got["yielded"] == [0, 1, 2] and got["errored"] == []
    assert not worker.isRunning()


def test_an_exception_is_delivered_as_the_error_and_no_result(qtbot):
    def fail(path):
        raise ValueError(f"cannot read {path}")

    worker = Worker(fail, "x.dcm")
    got = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    qtbot.waitUntil(lambda: len(got["errored"]) == 1, timeout=5000)
    assert isinstance(got["errored"][0], ValueError)
    assert str(got["errored"][0]) == "cannot read x.dcm"
    assert got["returned"] == [] and got["yielded"] == []


def test_an_aborted_worker_delivers_nothing_even_what_it_already_sent(qtbot):
    go = threading.Event()

    def slow():
        yield "sent before the abort"
        go.wait(5)
        yield "after"
        return "result"

    worker = Worker(slow)
    got = _collect(worker)
    worker.start()
    worker.abort()  # in the GUI thread, before the first yield was delivered
    go.set()
    qtbot.waitUntil(worker.isFinished, timeout=5000)
    qtbot.wait(50)  # let queued deliveries run
    assert got == {"yielded": [], "returned": [], "errored": []}


def test_latest_drops_the_replaced_run_and_deletes_each_worker(qtbot):
    first_may_end = threading.Event()
    results: list[str] = []
    latest = Latest()

    def compute(name, wait=None):
        if wait is not None:
            wait.wait(5)
        return name

    first = latest.start(Worker(compute, "first", first_may_end).connect(
        returned=results.append))
    second = latest.start(Worker(compute, "second").connect(returned=results.append))
    assert first.aborted and not second.aborted
    qtbot.waitUntil(lambda: results == ["second"], timeout=5000)
    first_may_end.set()
    latest.wait()
    qtbot.waitUntil(lambda: latest.worker is None, timeout=5000)
    qtbot.wait(50)
    assert results == ["second"]


def test_cancel_stops_the_work_and_still_delivers_its_outcome(qtbot):
    started = threading.Event()

    def count_until_cancelled():
        n = 0
        started.set()
        while not worker.cancelled():
            n += 1
            worker.yielded.emit(n)  # a core function's progress callback
            threading.Event().wait(0.001)
        return n

    worker = Worker(count_until_cancelled)
    got = _collect(worker)
    worker.start()
    assert started.wait(5)
    qtbot.waitUntil(lambda: len(got["yielded"]) >= 3, timeout=5000)
    worker.cancel()
    qtbot.waitUntil(lambda: len(got["returned"]) == 1, timeout=5000)
    assert got["returned"][0] >= 3 and got["errored"] == []
    assert got["yielded"][:3] == [1, 2, 3]


class _Job:
    """A stand-in for a core job's message stream (the relay under test is the real one):
    yields messages until cancelled, like a ModelProcess job or a TrainProcess."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.closed = False

    def messages(self):
        for i in range(1000):
            if self.cancelled.is_set():
                yield "cancelled"
                return
            yield i
            time.sleep(0.01)

    def close(self):
        self.closed = True


def test_a_process_relay_routes_messages_by_type_and_cancel_reaches_the_job(qtbot):
    job = _Job()
    numbers, ends = [], []
    relay = ProcessRelay(job.messages(), cancel=job.cancelled.set, close=job.close)
    relay.on(int, numbers.append).on(str, ends.append)
    relay.start()
    qtbot.waitUntil(lambda: len(numbers) >= 3, timeout=5000)
    relay.cancel()
    qtbot.waitUntil(lambda: ends == ["cancelled"], timeout=5000)
    relay.wait()
    assert numbers == list(range(len(numbers))) and job.closed


def test_an_aborted_process_relay_cancels_its_job_and_delivers_nothing_more(qtbot):
    job = _Job()
    numbers = []
    relay = ProcessRelay(job.messages(), cancel=job.cancelled.set, close=job.close)
    relay.on(object, numbers.append)
    relay.start()
    qtbot.waitUntil(lambda: len(numbers) >= 2, timeout=5000)
    relay.abort()
    seen = len(numbers)
    relay.wait()
    qtbot.wait(100)
    assert job.cancelled.is_set() and job.closed and len(numbers) == seen


def test_a_child_worker_computes_in_another_process_and_is_killed_by_abort(qtbot):
    """``child_worker``: the function runs in a spawned child (not a thread of this process),
    its result or its error's message arrives as from any Worker, and abort() kills the child
    at once."""
    import os

    from echoquality_gui.common.workers import child_worker

    worker = child_worker(os.getpid, name="test-pid")
    got = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=60000):
        worker.start()
    assert len(got["returned"]) == 1 and got["returned"][0] != os.getpid()

    failing = child_worker(int, "not a number", name="test-error")
    got = _collect(failing)
    with qtbot.waitSignal(failing.finished, timeout=60000):
        failing.start()
    assert not got["returned"] and "invalid literal" in str(got["errored"][0])

    sleeping = child_worker(time.sleep, 120, name="test-sleep")
    got = _collect(sleeping)
    sleeping.start()
    time.sleep(1.0)  # the child is up (or starting)
    started = time.monotonic()
    with qtbot.waitSignal(sleeping.finished, timeout=30000):
        sleeping.abort()
    assert time.monotonic() - started < 15 and got == {"yielded": [], "returned": [],
                                                       "errored": []}

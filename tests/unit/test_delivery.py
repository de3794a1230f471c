"""A run's journal delivered on a thread of its own: merged store calls, a pause after a failure, the end past it."""

from __future__ import annotations

import threading

import pytest
from mlflow.exceptions import MlflowException

from pipeline.tracking.delivery import Delivery
from pipeline.tracking.spool import MAX_METRICS, RunSpool


class Store:
    """The client calls a spool makes, recorded with the thread that made them; all refused while `down`."""

    def __init__(self):
        self.calls: list[tuple[str, str, int]] = []  # (call, thread name, how many metrics)
        self.down = False

    def _call(self, name: str, count: int = 0) -> None:
        if self.down:
            raise MlflowException("the store is down")
        self.calls.append((name, threading.current_thread().name, count))

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=True):
        self._call("log_batch", len(metrics))

    def log_artifact(self, run_id, path):
        self._call("log_artifact")


def _spool(tmp_path) -> RunSpool:
    return RunSpool.create(tmp_path / "spool", "run1", "sqlite:///none.db", "a-cell", "0", "key")


def _metrics(count: int, step: int = 0) -> list[tuple[str, float, int, int]]:
    return [(f"curves/m{i}", float(i), 1_000, step) for i in range(count)]


def test_consecutive_metric_entries_go_in_one_call_up_to_the_limit(tmp_path):
    spool, store = _spool(tmp_path), Store()
    for step in range(40):  # 40 evaluations of 20 metrics: 800 in one call
        spool.add_metrics(_metrics(20, step))
    spool.add_metrics(_metrics(500))  # would pass 1000: a call of its own
    spool.add_tags({"a": "b"})  # not a metric: alone, and it ends a run of metric entries
    spool.add_metrics(_metrics(3))
    assert spool.deliver(store) == 43
    assert [(name, count) for name, _, count in store.calls] == [
        ("log_batch", 800), ("log_batch", 500), ("log_batch", 0), ("log_batch", 3),
    ]  # fmt: skip
    assert not spool.pending() and all(count <= MAX_METRICS for _, _, count in store.calls)


def test_a_request_is_delivered_by_the_thread_and_close_waits_for_it(tmp_path):
    spool, store = _spool(tmp_path), Store()
    delivery = Delivery(spool, store)
    spool.add_metrics(_metrics(2))
    delivery.request()
    delivery.close()
    assert [(name, count) for name, _, count in store.calls] == [("log_batch", 2)]
    assert store.calls[0][1].startswith("bnbench-delivery-") and not spool.pending()


def test_a_failure_keeps_the_entries_and_the_end_s_delivery_goes_past_the_pause(tmp_path):
    spool, store = _spool(tmp_path), Store()
    delivery = Delivery(spool, store)
    store.down = True
    spool.add_metrics(_metrics(1))
    assert isinstance(delivery.deliver(), MlflowException)  # refused: kept in the journal, no raise
    store.down = False
    spool.add_metrics(_metrics(1, step=1))
    delivery.request()  # within the pause (30 s): not tried
    delivery.close()
    assert store.calls == [] and len(spool.pending()) == 2
    assert delivery.deliver() is None and [(name, count) for name, _, count in store.calls] == [("log_batch", 2)]
    assert not spool.pending()


@pytest.mark.parametrize(("pause_s", "tried"), [(3600, False), (0, True)])
def test_a_request_after_a_failure_is_tried_once_the_pause_is_over(tmp_path, pause_s, tried):
    spool, store = _spool(tmp_path), Store()
    delivery = Delivery(spool, store)
    delivery.retry_pause_s = pause_s
    store.down = True
    spool.add_metrics(_metrics(1))
    delivery.deliver()
    store.down = False
    delivery.request()
    delivery.close()  # the thread served that request: tried or not, as the pause says
    assert len(store.calls) == int(tried) and len(spool.pending()) == int(not tried)

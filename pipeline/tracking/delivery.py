"""A run's journal delivered to its store on a thread of its own, off the training path.

A cell's log call journals its data (pipeline/tracking/spool.py: written and synced to disk, the
durability guarantee) and returns; this thread then sends what is pending, all of it in one pass
however many calls asked meanwhile. A store that fails leaves the entries in the journal; for
RETRY_INTERVAL_S after a failure, further log calls leave it alone (the run's end tries anyway).
Nothing the store raises reaches the cell.

Only this thread delivers while it runs: the run's end first stops it (`close`), then delivers
the rest itself, so the journal's end entry goes last, after everything logged before it.
"""

from __future__ import annotations

import queue
import threading
import time

from mlflow.tracking import MlflowClient

from pipeline.tracking.spool import RunSpool

# After a failed delivery, log calls leave the server alone this long (the cell's end tries anyway).
RETRY_INTERVAL_S = 30
_STOP = object()


class Delivery:
    """The delivery thread of one run's spool: `request` after journaling, `close` to stop it."""

    def __init__(self, spool: RunSpool, client: MlflowClient):
        self.spool = spool
        self.client = client
        self.undelivered: Exception | None = None  # the last delivery's failure, None once all went
        self.retry_pause_s = RETRY_INTERVAL_S
        self._failed_at: float | None = None
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        # a daemon: a process that dies without ending its run is not kept alive by it (the journal keeps the rest)
        self._thread = threading.Thread(target=self._serve, name=f"bnbench-delivery-{spool.run_id}", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Something was journaled: deliver it soon, unless the store failed within the pause."""
        self._requests.put(None)

    def close(self) -> None:
        """Stop the thread once its current delivery is over; later deliveries are the caller's (`deliver`)."""
        self._requests.put(_STOP)
        self._thread.join()

    def deliver(self) -> Exception | None:
        """One delivery of everything pending, in the calling thread, past any pause; the failure, if any."""
        try:
            self.spool.deliver(self.client)
            self.undelivered, self._failed_at = None, None
        except Exception as error:  # whatever the store raised (HTTP, SQL, file): the journal keeps the entry
            self.undelivered, self._failed_at = error, time.monotonic()
        return self.undelivered

    def _paused(self) -> bool:
        return self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_pause_s

    def _serve(self) -> None:
        while True:
            asked = [self._requests.get()]
            while not self._requests.empty():  # every request made meanwhile is served by one pass
                asked.append(self._requests.get())
            if not self._paused():
                self.deliver()
            if _STOP in asked:
                return

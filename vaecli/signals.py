"""Stop requests: SIGINT/SIGTERM ask the training loop to stop at the next epoch boundary."""
from __future__ import annotations

import signal
import threading


class StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop after the epoch in flight (which then saves a
    checkpoint); a second signal interrupts at once. Only the main thread can install it."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)



"""A daemon thread that runs one loop until stopped: the base of the listener and the refresher."""

from __future__ import annotations

import threading

__all__ = ["Worker"]


class Worker:
    thread_name = "tnm-circuit"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake_up()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def _wake_up(self) -> None:
        """Interrupt a wait in the loop (the loop checks ``_stop`` next)."""

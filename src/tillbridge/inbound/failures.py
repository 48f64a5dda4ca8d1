"""Per-address memory of failed webhook verifications (a sliding window, per process).

An address whose deliveries failed verification ``threshold`` times within ``window`` seconds is
*throttled*: its next failing deliveries are answered 429 with ``Retry-After`` (the time until the
oldest failure leaves the window) instead of 401, and no further audit entries are written for
them, so a flood of forged requests cannot fill the audit log.

Design choices, and their limits:

* A delivery from a throttled address that **does** verify is still accepted. Throttling only
  changes the answer to requests that fail anyway, so a legitimate sender sharing an address with
  an attacker never loses a delivery.
* The window lives in this process's memory. With several API processes each counts on its own
  (an attacker gets ``threshold`` tries per process and window), and a restart forgets it.
* Memory is bounded: at most ``max_addresses`` addresses are tracked; the least recently seen is
  dropped first.

Not thread-safe; one instance per event loop (the API process).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from tillbridge.errors import ConfigError


class FailureWindow:
    """Counts verification failures per source address; see the module docstring."""

    def __init__(
        self,
        *,
        threshold: int,
        window_s: float,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or window_s <= 0 or max_addresses < 1:
            raise ConfigError("failure window needs threshold >= 1, window > 0, max_addresses >= 1")
        self.threshold = threshold
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, address: str) -> None:
        """Note one failed verification from ``address``."""
        now = self._clock()
        hits = self._hits.get(address)
        if hits is None:
            hits = deque()
            self._hits[address] = hits
            if len(self._hits) > self.max_addresses:
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(address)
        hits.append(now)
        self._trim(hits, now)
        # Only the last ``threshold`` failures matter for the decision; keep memory flat.
        while len(hits) > self.threshold:
            hits.popleft()

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` is no longer throttled, or ``None`` if it is not."""
        hits = self._hits.get(address)
        if not hits:
            return None
        now = self._clock()
        self._trim(hits, now)
        if len(hits) < self.threshold:
            if not hits:
                del self._hits[address]
            return None
        return max(0.0, hits[0] + self.window_s - now)

    def _trim(self, hits: deque[float], now: float) -> None:
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()

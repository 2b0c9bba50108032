"""Progress arithmetic shared by every view of a long step (no drawing here: the CLI draws).

A throughput shown while a step runs must describe the work being done, not the waiting
before it: the clock starts at the first finished batch of *this* extraction, so model build,
decode-worker start-up, inputs resumed from an earlier run and time spent in earlier steps
(extract-train before extract-test inside `olymp run`) are all outside the denominator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RateMeter:
    """Items per second of one counted job, measured from its first progress report on.

    `update(done)` takes the running count of items this job has handled (resumed ones are
    never counted: callers pass what *this* run processed). The first call only sets the
    baseline, so the first batch's start-up cost never dilutes the rate; `rate` is None until
    a second report arrives. `clock` is injectable for tests.
    """

    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    _start: tuple[float, int] | None = field(default=None, init=False)
    _last: tuple[float, int] | None = field(default=None, init=False)

    def update(self, done: int) -> float | None:
        now = self.clock()
        if self._start is None:
            self._start = (now, done)
        self._last = (now, done)
        return self.rate

    @property
    def rate(self) -> float | None:
        if self._start is None or self._last is None:
            return None
        seconds, items = self._last[0] - self._start[0], self._last[1] - self._start[1]
        if seconds <= 0 or items <= 0:
            return None
        return items / seconds

    def text(self) -> str:
        """The rate as the bars show it: one decimal (two below 1/s), "-" before it is known."""
        rate = self.rate
        if rate is None:
            return "-"
        return f"{rate:.2f}" if rate < 1 else f"{rate:.1f}"

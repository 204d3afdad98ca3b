"""What long work is doing, on stderr: a bar on a terminal, plain lines otherwise (logs, pipes,
CI), nothing when off. stdout is never touched: it carries a command's results alone.

The mode is ambient: `vae` sets it for the length of a command ("auto"), a Python call for its
own length (the `progress=` argument of vaecli.train, vaecli.evaluate, Run.log_likelihood);
library code that nobody asked to report (tests, other callers) stays silent ("none").

    reporting(mode)    the mode for a block of code
    say(text)          one line saying what happens next
    Task(what, total)  counted work: a bar, or a line every LINE_EVERY_S, with the time left
    working(what)      work that cannot be counted (TFDS preparing a dataset): lines while it lasts

Only Task and working wait QUIET_S before showing anything, so work that turns out short
prints nothing at all.
"""
from __future__ import annotations

import contextlib
import sys
import threading

from vaecli import clock

MODES = ("auto", "bar", "lines", "none")
QUIET_S = 2.0  # work shorter than this shows nothing
LINE_EVERY_S = 10.0  # plain lines: at most one this often
_state = {"mode": "none"}


def resolve(mode: str | bool | None = None) -> str:
    """'bar', 'lines' or 'none': `mode` (True is 'auto', False 'none'; None the ambient mode),
    'auto' becoming a bar on a terminal and lines elsewhere."""
    if mode is None:
        mode = _state["mode"]
    if isinstance(mode, bool):
        mode = "auto" if mode else "none"
    if mode not in MODES:
        from vaecli.errors import UsageError

        raise UsageError(f"progress={mode!r}: choose one of {', '.join(MODES)}, True or False")
    if mode == "auto":
        return "bar" if _stderr_is_terminal() else "lines"
    return mode


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def reporting(mode: str | bool | None):
    """Report in `mode` (see `resolve`) inside the block; None keeps the ambient mode."""
    before = _state["mode"]
    if mode is not None:
        _state["mode"] = resolve(mode)
    try:
        yield
    finally:
        _state["mode"] = before


def active() -> bool:
    return resolve() != "none"


def say(text: str) -> None:
    if active():
        print(text, file=sys.stderr, flush=True)


class Task:
    """`total` units of counted work (`update(done)`), shown once it has lasted QUIET_S: a rich
    bar with the time left on a terminal, else a line every LINE_EVERY_S and one at the end."""

    def __init__(self, what: str, total: int, unit: str = ""):
        self.what, self.total, self.unit = what, max(int(total), 1), unit
        self.mode = resolve()
        self.start = clock.now()
        self.last_line = None
        self.done = 0
        self._bar = None

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc) -> None:
        self.close(finished=exc[0] is None)

    def _left(self, elapsed: float) -> str:
        if not 0 < self.done < self.total:
            return ""
        return f", about {clock.format_duration(elapsed * (self.total - self.done) / self.done)} left"

    def update(self, done: int) -> None:
        self.done = min(int(done), self.total)
        elapsed = clock.now() - self.start
        if self.mode == "none" or elapsed < QUIET_S:
            return
        if self.mode == "bar":
            self._show_bar()
            self._bar.update(self._task, completed=self.done)
        elif self.last_line is None or clock.now() - self.last_line >= LINE_EVERY_S:
            self.last_line = clock.now()
            print(f"{self.what}: {self.done:,}/{self.total:,}{self.unit}, {clock.format_duration(elapsed)} so far"
                  f"{self._left(elapsed)}", file=sys.stderr, flush=True)

    def _show_bar(self) -> None:
        if self._bar is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.progress import TimeRemainingColumn

        self._bar = Progress(TextColumn(self.what), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=Console(stderr=True))
        self._task = self._bar.add_task(self.what, total=self.total, completed=self.done)
        self._bar.start()

    def close(self, finished: bool = True) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.last_line is not None and finished:  # lines were shown: say that it ended
            print(f"{self.what}: done in {clock.format_duration(clock.now() - self.start)}", file=sys.stderr,
                  flush=True)


@contextlib.contextmanager
def working(what: str, every: float = LINE_EVERY_S):
    """Work whose progress cannot be counted: after QUIET_S, a line every `every` seconds
    ('WHAT: 40s so far') until the block ends, then how long it took. Lines in every mode
    but 'none' (a bar would have nothing to fill)."""
    if not active():
        yield
        return
    start, stop = clock.now(), threading.Event()

    def beat() -> None:
        wait = QUIET_S
        while not stop.wait(wait):
            print(f"{what}: {clock.format_duration(clock.now() - start)} so far", file=sys.stderr, flush=True)
            wait = every

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if clock.now() - start >= QUIET_S:
        print(f"{what}: done in {clock.format_duration(clock.now() - start)}", file=sys.stderr, flush=True)

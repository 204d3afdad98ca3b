"""Progress on stderr: a rich bar on a terminal, plain lines otherwise (logs, pipes, CI)."""
from __future__ import annotations

import sys


class Progress:
    def __init__(self, total_epochs: int, mode: str = "auto", first_epoch: int = 0):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.total = total_epochs
        self._bar = None
        if mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeRemainingColumn

            # on stderr: rich's default console is stdout, which belongs to the results
            self._bar = RichProgress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     transient=False, console=Console(stderr=True))
            self._task = self._bar.add_task("train", total=total_epochs, completed=first_epoch, info="")
            self._bar.start()

    def epoch(self, epoch: int, info: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=epoch, info=info)
        elif self.mode == "lines":
            print(f"epoch {epoch}/{self.total}  {info}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        elif self.mode != "none":
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

"""The progress board of `verbatim transcribe` and `verbatim job --follow`: one bar per file and a
total (chunks done / total, ETA), fed by the jobs' event streams from several threads.

On a terminal the bars redraw in place; piped into a file, only the lines printed with `note` (one
per file as it ends) appear, then the board once, as it last stood.
"""

import threading
import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

from verbatim_client.schemas import JobEvent, QueueEvent, StatusEvent

NAME_WIDTH = 32
STATE_WIDTH = 16


@dataclass
class _Bar:
    """What one bar shows: a file's chunks, or (the total) all files' together."""

    task: TaskID
    total: int | None = None
    completed: int = 0
    eta: float | None = None
    eta_at: float = 0.0
    status: str = "pending"
    finished: bool = False

    def remaining(self, now: float) -> float | None:
        """The service's ETA, counted down since it came (between events the bar keeps moving)."""
        return None if self.eta is None else max(0.0, self.eta - (now - self.eta_at))


def clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _Chunks(ProgressColumn):
    def __init__(self, board: "Board", table_column: Column | None = None) -> None:
        super().__init__(table_column)
        self._board = board

    def render(self, task: Task) -> Text:
        return Text(self._board.chunks_text(task.id), style="progress.download")


class _Eta(ProgressColumn):
    """The service's ETA where it gave one, else rich's estimate from the speed so far."""

    def __init__(self, board: "Board") -> None:
        super().__init__()
        self._board = board

    def render(self, task: Task) -> Text:
        if self._board.finished(task.id):
            return Text("")
        seconds = self._board.eta(task.id)
        if seconds is None:
            seconds = task.time_remaining
        return Text("ETA -:--" if seconds is None else f"ETA {clock(seconds)}", style="progress.remaining")


class Board:
    """Thread-safe: each file's thread reports its own file; the total is kept from all of them."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.RLock()
        self._files: dict[str, _Bar] = {}
        self._total: _Bar | None = None
        self._progress = Progress(
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(bar_width=None),
            _Chunks(self, table_column=Column(min_width=12, no_wrap=True)),
            TextColumn(
                "{task.fields[state]}", markup=False, table_column=Column(width=STATE_WIDTH, no_wrap=True)
            ),
            _Eta(self),
            console=console,
            refresh_per_second=4,
            expand=True,
        )

    def __enter__(self) -> "Board":
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def add(self, key: str, name: str, state: str = "waiting") -> None:
        with self._lock:
            self._files[key] = _Bar(self._progress.add_task(name, total=None, state=state))

    def add_total(self) -> None:
        """The total's bar, below the files' (rich draws bars in the order they were added)."""
        with self._lock:
            self._total = _Bar(self._progress.add_task("total", total=None, state=""))
            self._update_total()

    def state(self, key: str, state: str) -> None:
        self._progress.update(self._files[key].task, state=state)

    def event(self, key: str, event: JobEvent) -> None:
        """Chunk events come in index order, one per chunk done: the count so far is the latest
        index + 1. Status events carry the job's own count, which may run ahead of that order."""
        with self._lock:
            bar = self._files[key]
            state = None
            if isinstance(event, StatusEvent):
                bar.status, state = event.status, _status_text(event)
                bar.total = event.chunks_total if event.chunks_total is not None else bar.total
                bar.completed = max(bar.completed, event.chunks_completed)
            elif isinstance(event, QueueEvent):
                bar.eta, bar.eta_at = event.eta_seconds, time.monotonic()
                if bar.status == "pending" and event.queue_position:
                    state = f"queued #{event.queue_position}"
            else:
                bar.completed = max(bar.completed, event.index + 1)
            self._show(bar, state)
            self._update_total()

    def finish(self, key: str, state: str, ok: bool) -> None:
        """A file done fills its bar; a failed one's stops where it was."""
        with self._lock:
            bar = self._files[key]
            bar.finished, bar.eta = True, None
            if ok:
                bar.total = bar.total or 1
                bar.completed = bar.total
            self._progress.update(bar.task, total=bar.total or 1, completed=bar.completed, state=state)
            self._update_total()
        self._progress.refresh()  # now, not at the next tick: the line `note` prints next says so

    def note(self, message: str, style: str | None = None) -> None:
        """A line above the bars (on a terminal) or in the log (piped), never wrapped."""
        self.console.print(Text(message, style=style or ""), soft_wrap=True)

    # --- what the columns read -----------------------------------------------------------------

    def chunks_text(self, task: TaskID) -> str:
        with self._lock:
            bar = self._bar(task)
            if bar is None:
                return ""
            total = "?" if bar.total is None else str(bar.total)
            if bar is self._total and any(f.total is None and not f.finished for f in self._files.values()):
                total += "+"  # files not yet cut into chunks add theirs later
            return f"{bar.completed}/{total} chunks"

    def finished(self, task: TaskID) -> bool:
        with self._lock:
            bar = self._bar(task)
            return bar is not None and bar.finished

    def eta(self, task: TaskID) -> float | None:
        """A file's: the service's. The total: the latest of the files' when every file waiting has
        one (they run side by side), else None (rich's estimate from the total's speed)."""
        now = time.monotonic()
        with self._lock:
            if self._total is not None and task == self._total.task:
                etas = [f.remaining(now) for f in self._files.values() if not f.finished]
                known = [e for e in etas if e is not None]
                return max(known) if known and len(known) == len(etas) else None
            bar = self._bar(task)
            return None if bar is None else bar.remaining(now)

    def _bar(self, task: TaskID) -> _Bar | None:
        if self._total is not None and self._total.task == task:
            return self._total
        return next((bar for bar in self._files.values() if bar.task == task), None)

    def _show(self, bar: _Bar, state: str | None) -> None:
        self._progress.update(bar.task, total=bar.total, completed=bar.completed)
        if state is not None:
            self._progress.update(bar.task, state=state)

    def _update_total(self) -> None:
        if self._total is None:
            return
        files = self._files.values()
        known = [f.total if f.total is not None else f.completed for f in files]
        self._total.total = sum(known) if any(f.total is not None for f in files) else None
        self._total.completed = sum(f.completed for f in files)
        self._total.finished = all(f.finished for f in files)
        done = sum(1 for f in files if f.finished)
        self._show(self._total, f"{done}/{len(files)} files")


def _status_text(event: StatusEvent) -> str:
    if event.status == "pending":
        return "queued"
    if event.status == "processing":
        return "preparing" if event.chunks_total is None else "transcribing"
    return event.status

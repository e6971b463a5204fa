"""The `verbatim` command: transcribe files, folders and URLs with a running Verbatim service, and
look after its jobs.

Exit codes: 0 done (files whose outputs exist count as done), 1 a file or a request failed, 2 a
wrong command line or no settings, 130 interrupted (Ctrl-C: the jobs go on in the service).
"""

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from verbatim_client import config
from verbatim_client.client import ApiError, Client, Option
from verbatim_client.discovery import FORMATS, plan
from verbatim_client.progress import Board, clock
from verbatim_client.schemas import ChunkEvent, Job
from verbatim_client.transcribe import Outcome, Run, await_final, resume_command, write_outputs

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
STATUSES = ("pending", "processing", "completed", "failed", "canceled")
DEFAULT_PARALLEL = 4
MAX_LOG_WIDTH = 1000

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except config.ConfigError as exc:
        err.print(Text(f"verbatim: {exc}", style="red"))
        return USAGE
    except ApiError as exc:
        err.print(Text(f"verbatim: the service refused: {exc}", style="red"))
        return FAILED
    except httpx.TransportError as exc:
        err.print(Text(f"verbatim: cannot reach the service: {exc or type(exc).__name__}", style="red"))
        return FAILED
    except KeyboardInterrupt:
        err.print("interrupted")
        return INTERRUPTED


# --- the command line ----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help=f"the service's URL (default: ${config.URL_VARIABLE}, or `verbatim login`)"
    )
    common.add_argument(
        "--api-key", help=f"an API key (default: ${config.KEY_VARIABLE}, or `verbatim login`)"
    )
    top = argparse.ArgumentParser(
        prog="verbatim",
        description="Transcribe audio and video with a Verbatim service, and look after its jobs.",
        epilog="Settings: flags first, then the environment, then what `verbatim login` stored.",
    )
    commands = top.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _transcribe_parser(
        commands.add_parser("transcribe", parents=[common], help="transcribe files, folders and URLs")
    )
    _jobs_parser(commands.add_parser("jobs", parents=[common], help="list your jobs"))
    _job_parser(commands.add_parser("job", parents=[common], help="show a job, or follow it to its end"))
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a pending or running job")
    cancel.add_argument("id")
    cancel.set_defaults(run=cancel_job)
    commands.add_parser("models", parents=[common], help="the models you may ask for").set_defaults(
        run=models
    )
    login_ = commands.add_parser("login", parents=[common], help="store the service's URL and your key")
    login_.set_defaults(run=login)
    return top


def _transcribe_parser(sub: argparse.ArgumentParser) -> None:
    sub.description = (
        "Transcribe files, folders (searched recursively for audio and video) and http(s) URLs, "
        "several at a time. Writes NAME.FORMAT beside each input, or in --out; a file whose "
        "outputs all exist is skipped unless --force."
    )
    sub.add_argument("paths", nargs="+", metavar="PATH", help="a file, a folder or an http(s) URL")
    sub.add_argument(
        "--format", type=formats, default=("srt",), help="comma-separated: txt,srt,vtt,json (default: srt)"
    )
    sub.add_argument("--out", type=Path, help="write the outputs here (sub-folders of a folder kept)")
    sub.add_argument("--force", action="store_true", help="transcribe again even where the outputs exist")
    sub.add_argument(
        "--jobs",
        type=positive,
        default=DEFAULT_PARALLEL,
        help=f"files at a time (default: {DEFAULT_PARALLEL})",
    )
    sub.add_argument("--model", help="a model of `verbatim models` (default: the service's)")
    sub.add_argument("--language", help="e.g. en (default: detected)")
    sub.add_argument("--task", choices=("transcribe", "translate"), help="translate: into English")
    sub.add_argument("--priority", choices=("high", "normal", "low"), help="default: your tier's")
    sub.add_argument("--prompt", help="names and spellings to expect")
    sub.set_defaults(run=transcribe)


def _jobs_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--status", choices=STATUSES)
    sub.add_argument("--search", help="text in the filename or the transcript")
    sub.add_argument(
        "--limit", type=positive, default=20, help="at most this many (default: 20, at most 100)"
    )
    sub.set_defaults(run=jobs)


def _job_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("id")
    sub.add_argument(
        "--follow", action="store_true", help="show progress and text as it comes, until the job ends"
    )
    sub.add_argument(
        "--format", type=formats, default=(), help="once completed, write these outputs (e.g. srt,txt)"
    )
    sub.add_argument("--out", type=Path, default=Path(), help="where --format writes them (default: here)")
    sub.set_defaults(run=show_job)


def formats(raw: str) -> tuple[str, ...]:
    """`srt,txt` → ("srt", "txt"), each known and once, in the order given."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{raw!r}: choose from {', '.join(FORMATS)}")
    return chosen


def positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of at least 1")
    return int(raw)


def client_for(args: argparse.Namespace) -> Client:
    login = config.resolve(args.url, args.api_key)
    return Client(login.url, login.api_key)


# --- transcribe ----------------------------------------------------------------------------------


def transcribe(args: argparse.Namespace) -> int:
    work = plan(args.paths, args.format, args.out)
    todo = [s for s in work.sources if args.force or not s.done()]
    ran: dict[str, Outcome] = {}
    if todo:
        with client_for(args) as client:
            _check_model(client, args.model)
            run = Run(client, Board(err), args.format, _options(args), args.jobs)
            try:
                with run.board:
                    ran = {outcome.label: outcome for outcome in run.run(todo)}
            except KeyboardInterrupt:
                return _interrupted(run, args.format, len(todo))
    outcomes = [ran.get(s.label) or Outcome(s.label, "skipped", detail="outputs exist") for s in work.sources]
    return _summary(outcomes + [Outcome(p.label, "failed", detail=p.reason) for p in work.problems])


def _options(args: argparse.Namespace) -> dict[str, Option]:
    return {
        "model": args.model,
        "language": args.language,
        "task": args.task,
        "priority": args.priority,
        "prompt": args.prompt,
    }


def _check_model(client: Client, model: str | None) -> None:
    """Once, before any upload: the key works, and the model asked for is one offered (else every
    file would fail alike)."""
    offered = [m.id for m in client.models()]
    if model is not None and model not in offered:
        raise config.ConfigError(f"no model {model!r} here: choose one of {', '.join(offered)}")


def _interrupted(run: Run, fmts: tuple[str, ...], files: int) -> int:
    waiting = run.waiting()
    err.print(
        Text("\nStopped waiting. Nothing was canceled: submitted jobs go on in the service.", style="yellow")
    )
    if waiting:
        err.print("To follow one again and write its outputs:")
        for label, job_id, folder in waiting:
            err.print(Text(f"  {resume_command(job_id, fmts, folder)}    # {label}"), soft_wrap=True)
    finished = len(run.finished())
    unsent = files - finished - len(waiting)
    if unsent > 0:
        err.print(f"{unsent} file(s) not submitted yet: run the same command again to go on.")
    return INTERRUPTED


def print_whole(table: Table) -> None:
    """On a terminal, fitted to its width; piped (a log, a file), as wide as the table needs, so
    that no file name is broken across lines there."""
    if out.is_terminal:
        out.print(table)
        return
    wide = Measurement.get(out, out.options.update_width(MAX_LOG_WIDTH), table).maximum
    Console(file=out.file, width=wide, highlight=False, no_color=out.no_color).print(table)


def _summary(outcomes: list[Outcome]) -> int:
    table = Table(title="verbatim transcribe", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("result")
    table.add_column("job", overflow="fold")
    table.add_column("outputs / reason", overflow="fold")
    styles = {"done": "green", "skipped": "dim", "failed": "red"}
    for o in outcomes:
        table.add_row(o.label, Text(o.result, style=styles[o.result]), o.job_id or "", o.detail)
    print_whole(table)
    failed = [o for o in outcomes if o.result == "failed"]
    counts = {r: sum(1 for o in outcomes if o.result == r) for r in ("done", "skipped", "failed")}
    err.print(
        f"{counts['done']} done, {counts['skipped']} skipped (outputs exist), {counts['failed']} failed"
    )
    for o in failed:
        err.print(Text(f"failed: {o.label}: {o.detail}", style="red"), soft_wrap=True)
    return FAILED if failed else OK


# --- jobs ----------------------------------------------------------------------------------------


def jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.jobs(status=args.status, search=args.search, limit=min(args.limit, 100))
    table = Table(box=None, header_style="bold")
    for name in ("id", "status", "progress", "created"):
        table.add_column(name, no_wrap=True)
    table.add_column("file", overflow="fold")
    for job in page.items:
        status = Text(job.status, style=_STATUS_STYLE.get(job.status, ""))
        table.add_row(job.id, status, _progress(job), job.created_at[:16].replace("T", " "), job.filename)
    print_whole(table)
    err.print(f"{len(page.items)} of {page.total} job(s)")
    return OK


_STATUS_STYLE = {"completed": "green", "failed": "red", "canceled": "dim", "processing": "cyan"}


def _progress(job: Job) -> str:
    if job.chunks_total is None:
        return ""
    return f"{job.chunks_completed}/{job.chunks_total} chunks"


def show_job(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.job(args.id)
        if args.follow and not job.final:
            try:
                job = _follow(client, job)
            except KeyboardInterrupt:
                err.print(
                    Text(
                        f"\nStopped following; job {job.id} goes on. Again: verbatim job {job.id} --follow",
                        style="yellow",
                    )
                )
                return INTERRUPTED
        _describe(job)
        if args.format and job.status == "completed":
            stem = Path(job.filename).stem or job.id
            outputs = {fmt: args.out / f"{stem}.{fmt}" for fmt in args.format}
            write_outputs(client, job.id, outputs)
            err.print(f"wrote {', '.join(str(p) for p in outputs.values())}")
    return OK if job.status in ("completed", "pending", "processing") else FAILED


def _follow(client: Client, job: Job) -> Job:
    """Bar on stderr, each chunk's text on stdout as it is transcribed (a partial transcript)."""

    def show(chunk: ChunkEvent) -> None:
        print(f"[{clock(chunk.start)}] {chunk.text.strip()}", flush=True)

    with Board(err) as board:
        board.add(job.id, job.filename or job.id, job.status)
        final = await_final(client, board, job.id, job.id, show)
        board.finish(job.id, final.status, final.status == "completed")
    return client.job(job.id)


def _describe(job: Job) -> None:
    rows = {
        "id": job.id,
        "file": job.filename,
        "status": job.status,
        "progress": _progress(job),
        "queue position": job.queue_position,
        "eta": None if job.eta_seconds is None else clock(job.eta_seconds),
        "model": job.model,
        "language": job.language,
        "created": job.created_at,
        "completed": job.raw.get("completed_at"),
        "error": job.error,
    }
    for name, value in rows.items():
        if value not in (None, ""):
            out.print(Text(f"{name + ':':16}{value}"))


def cancel_job(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.cancel(args.id)
    out.print(f"job {job.id}: {job.status}")
    return OK


def models(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        offered = client.models()
    for model in offered:
        notes = ["multilingual" if model.multilingual else "English only"] + (
            ["default"] if model.default else []
        )
        out.print(Text(f"{model.id:24}{', '.join(notes)}"))
    return OK


# --- login ---------------------------------------------------------------------------------------


def login(args: argparse.Namespace) -> int:
    """Asks what the flags leave out, checks the key against the service, then stores both."""
    path = config.config_path()
    saved = config.stored(path)
    url = (
        args.url
        or _ask(f"Verbatim URL [{saved.get('url', 'http://127.0.0.1:8000')}]: ")
        or saved.get("url")
        or "http://127.0.0.1:8000"
    )
    key = args.api_key or getpass.getpass("API key: ").strip()
    if not key:
        raise config.ConfigError("no API key given")
    with Client(url, key) as client:
        client.models()  # a 401 here: the key is refused, and nothing is stored
    config.save(path, config.Login(url, key))
    err.print(f"logged in to {url}; saved to {path} (readable by you alone)")
    return OK


def _ask(prompt: str) -> str:
    return input(prompt).strip()


if __name__ == "__main__":
    sys.exit(main())

"""`mistersmith`: submit tasks, follow them to a result, list, retry and cancel them, read their
logs and the system's stats, look after the DLQs.

Output for scripts goes to stdout (ids, JSON records, results); progress and errors go to stderr.
With --output json every command writes one JSON document to stdout, errors included.
Exit codes: 0 ok, 1 a task did not succeed, 2 bad usage or request refused, 3 not found,
4 not finished in time, 5 endpoint unreachable or failing, 6 authentication refused."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import webbrowser
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from mistersmith_client.client import MisterSmithClient, version
from mistersmith_client.errors import (
    EXIT_OK,
    EXIT_TASK_FAILED,
    ApiError,
    MisterSmithClientError,
    WaitTimeout,
)
from mistersmith_client.models import STATUSES, TASK_TYPES, Task
from mistersmith_client.settings import ClientSettings

PROG = "mistersmith"
_OUTPUT_FLAGS = ("--output", "-o")
_OUTPUT_HELP = "text (default) or json: one JSON document on stdout, errors included"
OWNER_HELP = "admins only: another caller's tasks (an IAM ARN, roles path-less, or apikey:<id>)"


class UsageError(MisterSmithClientError):
    """The command line asks for something that cannot be done (before any request is made)."""


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    # What follows `--` is execute's command, taken whole (argparse would read its options as ours).
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    console = Console(out, err, as_json=_wants_json(argv))
    try:
        if "--version" in argv:
            return _version(console)
        args = _parser().parse_args(argv)
        args.argv = command
        if command and args.command != "submit":
            raise UsageError("only `submit execute` takes a command after --")
        return int(args.run(args, console))
    except SystemExit as exit_:  # --help has printed its text
        return int(exit_.code or 0)
    except MisterSmithClientError as error:
        console.error(error)
        return error.exit_code
    except KeyboardInterrupt:
        console.note(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:  # `mistersmith ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _wants_json(argv: Sequence[str]) -> bool:
    """Read before parsing, so that a usage error is JSON too when JSON was asked for."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return (
        "--output=json" in argv
        or "-ojson" in argv
        or any(flag in ("--output", "-o") and value == "json" for flag, value in pairs)
    )


def _version(console: Console) -> int:
    if console.as_json:
        console.json({"version": version()})
    else:
        console.print(f"{PROG} {version()}")
    return EXIT_OK


class Console:
    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool = False) -> None:
        self.out = out
        self.err = err
        self.as_json = as_json

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def json(self, value: Any) -> None:
        self.print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def error(self, error: MisterSmithClientError) -> None:
        if not self.as_json:
            self.note(f"{PROG}: error: {error}")
            return
        document: dict[str, Any] = {
            "type": type(error).__name__,
            "message": str(error),
            "exit_code": error.exit_code,
        }
        if isinstance(error, ApiError):
            document |= {"status": error.status, "problem": error.problem}
        if isinstance(error, WaitTimeout):
            document["pending"] = {task_id: task.as_json() for task_id, task in error.pending.items()}
        self.json({"error": document})


class _Parser(argparse.ArgumentParser):
    """Usage errors raised, not printed and exited on, so that they can be JSON."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} -h)")


# ---------------------------------------------------------------- commands


def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    payload = _payload(args)
    with _client(args) as api:
        if args.upload:
            task = api.submit_via_upload(args.task_type, payload, task_id=args.id)
        else:
            task = api.submit(args.task_type, payload, task_id=args.id)
        return _submitted(api, task, args, console)


def cmd_retry(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        task = api.retry(args.task_id, new_id=args.id, owner=args.owner)
        console.note(f"{task.id} retries {args.task_id}")
        return _submitted(api, task, args, console)


def _submitted(api: MisterSmithClient, task: Task, args: argparse.Namespace, console: Console) -> int:
    """The new task's id on stdout (alone, so that ID=$(mistersmith submit ... --wait) works);
    with --wait, progress and the outcome on stderr and the outcome as exit code."""
    if not args.wait:
        _emit_task(console, task) if console.as_json else console.print(task.id)
        return EXIT_OK
    if not console.as_json:
        console.print(task.id)
    records = _wait(api, [task.id], args, console)
    done = records[task.id]
    if console.as_json:
        _emit_task(console, done)
    else:
        console.note(_outcome_line(done))
        if args.show_output:
            _show_output(done, console)
    return EXIT_OK if done.succeeded else EXIT_TASK_FAILED


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        _emit_task(console, api.get(args.task_id, owner=args.owner))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        records = _wait(api, args.task_ids, args, console)
    if console.as_json:
        console.json({"tasks": [task.as_json() for task in records.values()]})
    else:
        for task in records.values():
            console.print(_outcome_line(task))
            if args.show_output:
                _show_output(task, console)
    return EXIT_OK if all(task.succeeded for task in records.values()) else EXIT_TASK_FAILED


def cmd_result(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        task = (
            api.wait([args.task_id], timeout_seconds=args.timeout)[args.task_id]
            if args.wait
            else api.get(args.task_id)
        )
    if not task.terminal:
        raise WaitTimeout(f"task {task.id} is {task.status}: no result yet (add --wait to wait for it)", {})
    downloaded = []
    if task.result is not None and args.download:
        from mistersmith_client import aws

        settings = _settings(args)
        downloaded = [
            (uri, aws.download(uri, args.download, settings)) for uri in _artifact_uris(task.result)
        ]
    if args.show_output and not console.as_json:
        _show_output(task, console)
    elif task.result is not None:
        console.json(task.result)
    elif console.as_json:
        console.json(None)
    for uri, path in downloaded:
        console.note(f"downloaded {uri} to {path}")
    if task.error:
        console.note(f"task {task.id} {task.status}: {task.error.get('type')}: {task.error.get('message')}")
    elif not task.succeeded:
        console.note(f"task {task.id} {task.status}")
    return EXIT_OK if task.succeeded else EXIT_TASK_FAILED


def cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        tasks = [api.cancel(task_id, owner=args.owner) for task_id in args.task_ids]
        if args.wait:
            # A running task may still end otherwise (it finished first): exit 0 only if all were cancelled.
            records = _wait(api, args.task_ids, args, console)
            if console.as_json:
                console.json({"tasks": [task.as_json() for task in records.values()]})
            for task in [] if console.as_json else records.values():
                console.print(_outcome_line(task))
            return (
                EXIT_OK if all(task.status == "CANCELLED" for task in records.values()) else EXIT_TASK_FAILED
            )
    if console.as_json:
        console.json({"tasks": [task.as_json() for task in tasks]})
    for task in [] if console.as_json else tasks:
        requested = " (cancel requested; its worker stops it)" if task.cancel_requested else ""
        console.print(f"{task.id}\t{task.status}{requested}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    tasks: list[Task] = []
    token = args.next_token
    with _client(args) as api:
        while True:
            page_size = min(args.page_size, args.max - len(tasks))
            page = api.list(
                status=args.status, task_type=args.type, limit=page_size, next_token=token, owner=args.owner
            )
            tasks += page.items
            token = page.next_token
            if not token or len(tasks) >= args.max:
                break
    # The API lists newest first within a status; across statuses the CLI orders them.
    tasks.sort(key=lambda task: task.created_at, reverse=True)
    if console.as_json:
        console.json({"items": [task.as_json() for task in tasks], "next_token": token})
        return EXIT_OK
    if args.json:  # one record per line, as before --output existed
        for task in tasks:
            console.print(json.dumps(task.as_json(), sort_keys=True))
    else:
        console.print(_table([_LIST_HEADER, *(_row(task) for task in tasks)]))
    if token:
        console.note(f"more tasks: repeat with --next-token {token}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        stats = api.stats()
    if console.as_json:
        console.json(stats)
        return EXIT_OK
    for name, depth in stats.get("queues", {}).items():
        console.print(
            f"queue {name:<8} visible {depth.get('visible')}  in flight {depth.get('in_flight')}  "
            f"delayed {depth.get('delayed')}  dead letters {depth.get('dead_letters')}"
        )
    workers = stats.get("workers") or {}
    console.print(
        f"workers  desired {workers.get('desired')}  running {workers.get('running')}  "
        f"pending {workers.get('pending')}"
    )
    counts = stats.get("tasks", {})
    console.print(
        "tasks    " + "  ".join(f"{status} {n}" for status, n in counts.get("by_status", {}).items() if n)
    )
    console.print(
        "by type  " + "  ".join(f"{task_type} {n}" for task_type, n in counts.get("by_type", {}).items())
    )
    decisions = stats.get("scaling_decisions", [])
    console.print(f"scaling decisions in the last hour: {len(decisions)}")
    for decision in decisions[-5:]:
        console.print(
            f"  {decision.get('at')}  {decision.get('previous')} -> {decision.get('desired')}  "
            f"{decision.get('reason')}  (visible {decision.get('visible')}, running {decision.get('running')})"
        )
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, console: Console) -> int:
    settings = _settings(args)
    local = args.log_dir is not None or _is_local(settings)
    seen: set[str] = set()
    since = time.time() - args.since_hours * 3600
    collected: list[dict[str, Any]] = []
    with _client(args) as api:
        while True:
            finished = api.get(args.task_id).terminal
            for line in _log_lines(args, settings, local, since):
                key = json.dumps(line, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                collected.append(line)
                if not console.as_json:
                    console.print(_log_text(line))
            if not args.follow or finished:
                break
            time.sleep(args.interval)
    if console.as_json:
        console.json({"task_id": args.task_id, "lines": collected})
    elif not collected:
        console.note(f"no log lines of task {args.task_id}" + ("" if local else " in the stack's log groups"))
    return EXIT_OK


def _log_lines(
    args: argparse.Namespace, settings: ClientSettings, local: bool, since: float
) -> list[dict[str, Any]]:
    if local:
        from mistersmith_client.logs import DEFAULT_LOG_DIR, local_lines

        return [line.as_json() for line in local_lines(args.task_id, args.log_dir or DEFAULT_LOG_DIR)]
    from mistersmith_client import aws

    rows = aws.task_log_lines(settings, args.task_id, since=since, until=time.time(), sleep=time.sleep)
    return [
        {"timestamp": stamp, "component": group, "record": _as_record(message)}
        for stamp, group, message in rows
    ]


def _as_record(message: str) -> dict[str, Any]:
    try:
        value = json.loads(message)
    except ValueError:
        return {"message": message}
    return value if isinstance(value, dict) else {"message": message}


def _log_text(line: dict[str, Any]) -> str:
    record = line["record"]
    return " | ".join(
        [
            str(line.get("timestamp", "")),
            line["component"],
            str(record.get("level", "")),
            str(record.get("message", "")),
        ]
    )


def _is_local(settings: ClientSettings) -> bool:
    host = urlsplit(settings.api_url or "").hostname or ""
    return not settings.stack_name and host in ("127.0.0.1", "localhost", "::1")


def cmd_console(args: argparse.Namespace, console: Console) -> int:
    from mistersmith_client.console_server import ConsoleServer

    with _client(args) as api:
        server = ConsoleServer(api, port=args.port)
        if console.as_json:
            console.json({"url": server.url, "api_url": api.api_url})
        else:
            console.print(server.url)
        console.note(f"console on {server.url}, forwarding to {api.api_url}; Ctrl-C stops it")
        if args.open:
            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    return EXIT_OK


def cmd_completion(args: argparse.Namespace, console: Console) -> int:
    script = completion_script(_parser(), args.shell)
    if console.as_json:
        console.json({"shell": args.shell, "script": script})
    else:
        console.print(script)
    return EXIT_OK


def cmd_dlq_list(args: argparse.Namespace, console: Console) -> int:
    from mistersmith_client.aws import DeadLetters

    dead_letters = DeadLetters(_settings(args))
    shown = []
    for queue in _queues(dead_letters, args.queue):
        letters = dead_letters.peek(queue, args.show) if args.show else []
        depth = dead_letters.depth(queue)
        shown.append(
            {
                "name": queue.name,
                "url": queue.url,
                "depth": depth,
                "messages": [
                    {
                        "message_id": letter.message_id,
                        "task_id": letter.task_id,
                        "task_type": letter.task_type,
                        "receive_count": letter.receive_count,
                    }
                    for letter in letters
                ],
            }
        )
        if console.as_json:
            continue
        console.print(f"{queue.name}\t{depth} message(s)\t{queue.url}")
        for letter in letters:
            console.print(
                f"  {letter.message_id}\ttask={letter.task_id or '?'}\ttype={letter.task_type or '?'}"
                f"\treceives={letter.receive_count}"
            )
    if console.as_json:
        console.json({"queues": shown})
    return EXIT_OK


def cmd_dlq_redrive(args: argparse.Namespace, console: Console) -> int:
    from mistersmith_client.aws import DeadLetters

    dead_letters = DeadLetters(_settings(args))
    moved = []
    for queue in _queues(dead_letters, args.queue):
        if queue.source_url is None and args.queue == "all":
            continue
        result = dead_letters.redrive(queue, args.max)
        moved.append(
            {
                "queue": queue.name,
                "moved": result.moved,
                "task_handle": result.task_handle,
                "to": queue.source_url,
            }
        )
        if console.as_json:
            continue
        if result.task_handle:
            console.print(f"{queue.name}\tmove task started ({result.task_handle}); SQS moves the messages")
        else:
            console.print(f"{queue.name}\t{result.moved} message(s) moved back to {queue.source_url}")
    if console.as_json:
        console.json({"redriven": moved})
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _wait(
    api: MisterSmithClient, task_ids: Sequence[str], args: argparse.Namespace, console: Console
) -> dict[str, Task]:
    progress = Progress(console.err, quiet=args.quiet)
    try:
        return api.wait(
            task_ids, timeout_seconds=args.timeout, interval_seconds=args.interval, on_update=progress.update
        )
    finally:
        progress.done()


def _outcome_line(task: Task) -> str:
    error = f"\t{task.error.get('type')}: {task.error.get('message')}" if task.error else ""
    return f"{task.id}\t{task.status}{error}"


def _show_output(task: Task, console: Console) -> None:
    """An execute task's stdout to stdout and its stderr to stderr, as the command wrote them."""
    result = task.result or {}
    if "stdout" not in result and "stderr" not in result:
        console.note(f"task {task.id} has no command output ({task.task_type})")
        return
    console.out.write(str(result.get("stdout", "")))
    console.out.flush()
    console.err.write(str(result.get("stderr", "")))
    console.err.flush()


def _emit_task(console: Console, task: Task) -> None:
    console.json(task.as_json())


class Progress:
    """One line that is rewritten on a terminal; elsewhere a line only when the counts change."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self.last = ""

    def update(self, records: dict[str, Task]) -> None:
        counts = Counter(task.status for task in records.values())
        summary = ", ".join(f"{counts[status]} {status}" for status in STATUSES if counts[status])
        if self.quiet or (summary == self.last and not self.tty):
            return
        self.last = summary
        elapsed = time.monotonic() - self.started
        line = f"[{elapsed:5.1f}s] {len(records)} task(s): {summary}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)

    def done(self) -> None:
        if self.tty and not self.quiet and self.last:
            self.stream.write("\n")
            self.stream.flush()


_LIST_HEADER = ("ID", "TYPE", "STATUS", "DURATION", "CREATED", "ERROR")


def _row(task: Task) -> tuple[str, ...]:
    duration = f"{task.duration_ms / 1000:.1f}s" if task.duration_ms is not None else "-"
    error = f"{task.error.get('type')}: {task.error.get('message')}" if task.error else ""
    return (task.id, task.task_type, task.status, duration, task.created_at, error[:80])


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _payload(args: argparse.Namespace) -> dict[str, Any]:
    if args.argv and args.task_type != "execute":
        raise UsageError(f"only execute takes a command; {args.task_type} takes --file / --dir")
    flags = {
        name: value
        for name, value in {
            "command": args.argv or None,
            "files": _files(args.file, args.dir),
            "language": args.language,
            "env": _env(args.env),
            "stdin": args.stdin_text,
            "timeout_seconds": args.timeout_seconds,
        }.items()
        if value is not None
    }
    if args.payload is not None or args.payload_file is not None:
        if flags:
            raise UsageError(
                "give the payload either as JSON (--payload, --payload-file) or with flags, not both"
            )
        return _json_payload(args)
    if not flags:
        raise UsageError(
            f"no payload: give --payload, --payload-file FILE (or - for stdin), or flags; see {PROG} submit -h"
        )
    return flags


def _json_payload(args: argparse.Namespace) -> dict[str, Any]:
    if args.payload is not None:
        source, text = "--payload", args.payload
    elif args.payload_file == "-":
        source, text = "stdin", sys.stdin.read()
    else:
        source, text = str(args.payload_file), _read(Path(args.payload_file))
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise UsageError(f"the payload from {source} is not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise UsageError(f"the payload from {source} must be a JSON object")
    return payload


def _files(paths: list[str] | None, directory: str | None) -> dict[str, str] | None:
    files = {path: _read(Path(path)) for path in paths or []}
    if directory:
        root = Path(directory)
        if not root.is_dir():
            raise UsageError(f"--dir {directory}: not a directory")
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                files[relative.as_posix()] = _read(path)
    return files or None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from error


def _env(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    bad = [pair for pair in pairs if "=" not in pair]
    if bad:
        raise UsageError(f"--env takes NAME=VALUE, not {bad[0]!r}")
    return dict(pair.split("=", 1) for pair in pairs)


def _artifact_uris(result: dict[str, Any]) -> list[str]:
    return [
        value
        for key, value in result.items()
        if key.endswith("_uri") and isinstance(value, str) and value.startswith("s3://")
    ]


def _queues(dead_letters: Any, name: str) -> list[Any]:
    queues = [queue for queue in dead_letters.queues() if name in ("all", queue.name)]
    if not queues:
        raise UsageError(f"no {name} dead-letter queue is configured")
    return queues


def _settings(args: argparse.Namespace) -> ClientSettings:
    """Flags over the environment; --stack-name alone overrides MISTERSMITH_API_URL too."""
    flags: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "api_url",
            "stack_name",
            "auth",
            "api_key",
            "region",
            "profile",
            "timeout_seconds",
            "retries",
        )
        if getattr(args, name, None) is not None
    }
    if args.stack_name and not args.api_url:
        flags["api_url"] = None
    try:
        return ClientSettings(**flags)
    except ValueError as error:
        raise UsageError(f"invalid configuration: {error}") from error


def _client(args: argparse.Namespace) -> MisterSmithClient:
    return MisterSmithClient.from_settings(_settings(args))


def _parser() -> argparse.ArgumentParser:
    common, waiting = _shared_options()
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(*_OUTPUT_FLAGS, choices=["text", "json"], default="text", help=_OUTPUT_HELP)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_submit(commands, common, waiting)
    _add_task_commands(commands, common, waiting)
    _add_operator_commands(commands, common)
    _add_dlq(commands, common)
    return parser


def _shared_options() -> tuple[_Parser, _Parser]:
    """The endpoint, auth and output options of every command, and the waiting options of those that wait."""
    common = _Parser(add_help=False)
    # Also after the command; SUPPRESS keeps a subcommand from resetting what was given before it.
    common.add_argument(
        *_OUTPUT_FLAGS, choices=["text", "json"], default=argparse.SUPPRESS, help=_OUTPUT_HELP
    )
    where = common.add_argument_group("endpoint and auth (flags win over MISTERSMITH_* variables)")
    where.add_argument("--api-url", help="API base URL, e.g. http://127.0.0.1:3000 (MISTERSMITH_API_URL)")
    where.add_argument("--stack-name", help="read ApiUrl and the queue URLs from this CloudFormation stack")
    where.add_argument(
        "--auth", choices=["auto", "iam", "api-key", "none"], help="default auto: SigV4 for AWS, none locally"
    )
    where.add_argument("--api-key", help="API key for --auth api-key (better: MISTERSMITH_API_KEY)")
    where.add_argument("--region", help="AWS region to sign for (default: from the URL or AWS_REGION)")
    where.add_argument("--profile", help="AWS profile for credentials and stack outputs")
    where.add_argument(
        "--http-timeout", dest="timeout_seconds", type=float, help="seconds per HTTP request (30)"
    )
    where.add_argument("--retries", type=int, help="retries of unreachable / throttled / 5xx requests (3)")

    waiting = _Parser(add_help=False)
    waiting.add_argument("--timeout", type=float, default=600, help="seconds to wait before giving up (600)")
    waiting.add_argument("--interval", type=float, default=1.0, help="seconds between polls (1)")
    waiting.add_argument("--quiet", action="store_true", help="no progress display")

    return common, waiting


def _add_submit(
    commands: argparse._SubParsersAction[_Parser],
    common: _Parser,
    waiting: _Parser,
) -> None:
    """submit and retry: tasks in."""
    submit = commands.add_parser(
        "submit",
        parents=[common, waiting],
        help="submit a task; prints its id",
        description="Submit a task. The payload is JSON (--payload, --payload-file FILE or - for stdin) "
        "or built from flags: `submit execute [options] -- python3 -c 'print(1)'` (the command after --), "
        "`submit analyze --dir src`.",
    )
    submit.add_argument("task_type", choices=TASK_TYPES)
    submit.add_argument(
        "--id", help="task id (default: a new one); resubmitting the same id and body is safe"
    )
    submit.add_argument("--payload", help="the payload as a JSON object")
    submit.add_argument("--payload-file", help="a file with the payload as JSON; - reads stdin")
    submit.add_argument(
        "--file", action="append", help="add a file (its path as given) to the payload's files"
    )
    submit.add_argument(
        "--dir", help="add every file under DIR (paths relative to DIR), hidden ones excepted"
    )
    submit.add_argument("--language", help="compile: the toolchain (python)")
    submit.add_argument(
        "--env", action="append", metavar="NAME=VALUE", help="execute: an environment variable"
    )
    submit.add_argument("--stdin-text", help="execute: text for the command's stdin")
    submit.add_argument("--timeout-seconds", type=float, help="execute: the command's time limit")
    submit.add_argument(
        "--upload", action="store_true", help="send the payload through a presigned S3 upload"
    )
    _add_wait_flags(submit)
    submit.set_defaults(run=cmd_submit)

    retry = commands.add_parser(
        "retry",
        parents=[common, waiting],
        help="submit a task again (same type and payload, retry_of set); prints the new id",
    )
    retry.add_argument("task_id", metavar="ID")
    retry.add_argument("--id", help="the new task's id (default: a new one)")
    retry.add_argument("--owner", help=OWNER_HELP)
    _add_wait_flags(retry)
    retry.set_defaults(run=cmd_retry)


def _add_task_commands(
    commands: argparse._SubParsersAction[_Parser],
    common: _Parser,
    waiting: _Parser,
) -> None:
    """status, wait, result, cancel, list: one's tasks."""
    status = commands.add_parser("status", parents=[common], help="print a task's record as JSON")
    status.add_argument("task_id")
    status.add_argument("--owner", help=OWNER_HELP)
    status.set_defaults(run=cmd_status)

    wait = commands.add_parser(
        "wait", parents=[common, waiting], help="wait for tasks; exit 0 only if all succeeded"
    )
    wait.add_argument("task_ids", nargs="+", metavar="ID")
    wait.add_argument("--show-output", action="store_true", help="then print execute tasks' stdout / stderr")
    wait.set_defaults(run=cmd_wait)

    result = commands.add_parser(
        "result",
        parents=[common, waiting],
        help="print a finished task's result as JSON (and download artifacts)",
    )
    result.add_argument("task_id")
    result.add_argument("--wait", action="store_true", help="wait for the task to finish first")
    result.add_argument(
        "--download", type=Path, metavar="DIR", help="download the result's s3:// artifacts into DIR"
    )
    result.add_argument(
        "--show-output", action="store_true", help="an execute task's stdout / stderr, not the result JSON"
    )
    result.set_defaults(run=cmd_result)

    cancel = commands.add_parser("cancel", parents=[common, waiting], help="cancel tasks")
    cancel.add_argument("task_ids", nargs="+", metavar="ID")
    cancel.add_argument(
        "--wait", action="store_true", help="then wait until each has ended (exit 0 if all were cancelled)"
    )
    cancel.add_argument("--owner", help=OWNER_HELP)
    cancel.set_defaults(run=cmd_cancel)

    listing = commands.add_parser("list", parents=[common], help="list tasks, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--type", choices=TASK_TYPES)
    listing.add_argument("--owner", help=OWNER_HELP)
    listing.add_argument(
        "--page-size", type=_page_size, default=50, help="tasks per request (1-100, default 50)"
    )
    listing.add_argument("--max", type=_positive, default=200, help="stop after this many tasks (200)")
    listing.add_argument("--next-token", help="continue where an earlier listing stopped")
    listing.add_argument("--json", action="store_true", help="one JSON record per line (JSON lines)")
    listing.set_defaults(run=cmd_list)


def _add_operator_commands(
    commands: argparse._SubParsersAction[_Parser],
    common: _Parser,
) -> None:
    """stats, logs, console, completion: the system and the shell."""
    stats = commands.add_parser(
        "stats", parents=[common], help="queue depths, workers, scaling decisions, task counts (GET /stats)"
    )
    stats.set_defaults(run=cmd_stats)

    logs = commands.add_parser(
        "logs",
        parents=[common],
        help="a task's log lines (local: .local/logs; AWS: Logs Insights over the stack's log groups)",
    )
    logs.add_argument("task_id", metavar="ID")
    logs.add_argument("--follow", "-f", action="store_true", help="keep reading until the task has finished")
    logs.add_argument("--interval", type=float, default=2.0, help="seconds between reads with --follow (2)")
    logs.add_argument(
        "--log-dir",
        type=Path,
        help="the local stack's log folder (default .local/logs when the API is local)",
    )
    logs.add_argument("--since-hours", type=float, default=24, help="AWS: how far back to search (24)")
    logs.set_defaults(run=cmd_logs)

    console_command = commands.add_parser(
        "console",
        parents=[common],
        help="the task console in a browser: a server on 127.0.0.1 forwarding its API calls signed",
    )
    console_command.add_argument(
        "--port", type=int, default=8765, help="port on 127.0.0.1 (8765; 0: any free)"
    )
    console_command.add_argument("--open", action="store_true", help="open it in the default browser")
    console_command.set_defaults(run=cmd_console)

    completion = commands.add_parser(
        "completion",
        parents=[common],
        help="print a shell completion script",
        description="bash: `source <(mistersmith completion bash)`; zsh: `source <(mistersmith completion zsh)`.",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run=cmd_completion)


def _add_dlq(
    commands: argparse._SubParsersAction[_Parser],
    common: _Parser,
) -> None:
    """dlq list / redrive."""
    dlq = commands.add_parser(
        "dlq",
        parents=[common],
        help="dead-letter queues: list, redrive",
        description="Messages SQS gave up on. DeadLetterFunction normally reads them at once and ends their "
        "tasks DEAD_LETTERED, so what stays here is what it could not read or record (a table outage, a "
        "malformed message). A redrive sends messages back to their source queue; a task already "
        "terminal is then dropped unrun by its worker.",
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    dlq_list = dlq_commands.add_parser("list", parents=[common], help="messages per dead-letter queue")
    dlq_list.add_argument("--queue", choices=["work", "analyze", "router", "all"], default="all")
    dlq_list.add_argument(
        "--show", type=int, default=0, metavar="N", help="also show up to N messages per queue"
    )
    dlq_list.set_defaults(run=cmd_dlq_list)
    redrive = dlq_commands.add_parser(
        "redrive", parents=[common], help="move messages back to their source queue"
    )
    redrive.add_argument("--queue", choices=["work", "analyze", "all"], default="all")
    redrive.add_argument("--max", type=_positive, help="move at most N messages (one by one)")
    redrive.set_defaults(run=cmd_dlq_redrive)


def _add_wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="then wait (progress on stderr; exit code = outcome; id alone on stdout)",
    )
    parser.add_argument(
        "--show-output", action="store_true", help="with --wait: then print an execute task's stdout / stderr"
    )


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash completion function for the commands and options of `parser` (zsh runs it through
    bashcompinit)."""
    words: dict[str, list[str]] = {}

    def walk(current: argparse.ArgumentParser, path: list[str]) -> None:
        choices: list[str] = []
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    choices.append(name)
                    walk(child, [*path, name])
            elif not action.option_strings and action.choices:
                choices += [str(choice) for choice in action.choices]
        words[" ".join(path)] = choices + [
            flag for action in current._actions for flag in action.option_strings
        ]

    walk(parser, [])
    cases = "\n".join(f'    "{path}") echo "{" ".join(found)}" ;;' for path, found in sorted(words.items()))
    script = f"""_{PROG}_words() {{
  case "$1" in
{cases}
  esac
}}
_{PROG}() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" word next
  for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
    next="${{path:+$path }}$word"
    [[ -n "$(_{PROG}_words "$next")" ]] && path="$next"
  done
  COMPREPLY=($(compgen -W "$(_{PROG}_words "$path")" -- "$cur"))
}}
complete -F _{PROG} {PROG}"""
    prefix = "autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else ""
    return prefix + script


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _page_size(text: str) -> int:
    value = _positive(text)
    if value > 100:
        raise argparse.ArgumentTypeError("the API returns at most 100 tasks per request")
    return value


if __name__ == "__main__":
    sys.exit(main())

"""`mistersmith`: submit tasks, follow them to a result, list and cancel them, look after the DLQs.

Output for scripts goes to stdout (ids, JSON records, results); progress and errors go to stderr.
Exit codes: 0 ok, 1 a task did not succeed, 2 bad usage or request refused, 3 not found,
4 not finished in time, 5 endpoint unreachable or failing, 6 authentication refused."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mistersmith_client.client import MisterSmithClient
from mistersmith_client.errors import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    MisterSmithClientError,
    WaitTimeout,
)
from mistersmith_client.models import STATUSES, TASK_TYPES, Task
from mistersmith_client.settings import ClientSettings

PROG = "mistersmith"
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
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its message
        return int(exit_.code or 0)
    args.argv = command
    if command and args.command != "submit":
        print(f"{PROG}: error: only `submit execute` takes a command after --", file=err)
        return EXIT_REJECTED
    try:
        return args.run(args, Console(out, err))
    except MisterSmithClientError as error:
        print(f"{PROG}: error: {error}", file=err)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130


class Console:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def json(self, value: Any) -> None:
        self.print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)


# ---------------------------------------------------------------- commands


def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    payload = _payload(args)
    with _client(args) as api:
        if args.upload:
            task = api.submit_via_upload(args.task_type, payload, task_id=args.id)
        else:
            task = api.submit(args.task_type, payload, task_id=args.id)
        console.print(task.id)
        if not args.wait:
            return EXIT_OK
        return _wait_and_report(api, [task.id], args, console)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        console.json(api.get(args.task_id, owner=args.owner).as_json())
    return EXIT_OK


def cmd_wait(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        return _wait_and_report(api, args.task_ids, args, console)


def cmd_result(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        task = (
            api.wait([args.task_id], timeout_seconds=args.timeout)[args.task_id]
            if args.wait
            else api.get(args.task_id)
        )
    if not task.terminal:
        console.note(f"task {task.id} is {task.status}: no result yet (add --wait to wait for it)")
        return EXIT_TIMEOUT
    if task.result is not None:
        console.json(task.result)
        if args.download:
            for uri in _artifact_uris(task.result):
                from mistersmith_client import aws

                console.note(f"downloaded {uri} to {aws.download(uri, args.download, _settings(args))}")
    if task.error:
        console.note(f"task {task.id} {task.status}: {task.error.get('type')}: {task.error.get('message')}")
    elif not task.succeeded:
        console.note(f"task {task.id} {task.status}")
    return EXIT_OK if task.succeeded else EXIT_TASK_FAILED


def cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as api:
        for task_id in args.task_ids:
            task = api.cancel(task_id, owner=args.owner)
            requested = " (cancel requested; its worker stops it)" if task.cancel_requested else ""
            if not args.wait:
                console.print(f"{task.id}\t{task.status}{requested}")
        if args.wait:
            # A running task may still end otherwise (it finished first): exit 0 only if all were cancelled.
            _wait_and_report(api, args.task_ids, args, console)
            records = {task_id: api.get(task_id) for task_id in args.task_ids}
            return (
                EXIT_OK if all(task.status == "CANCELLED" for task in records.values()) else EXIT_TASK_FAILED
            )
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    shown = 0
    token = args.next_token
    with _client(args) as api:
        if not args.json:
            console.print(f"{'ID':<34} {'TYPE':<8} {'STATUS':<14} CREATED")
        while True:
            page_size = min(args.page_size, args.max - shown)
            page = api.list(
                status=args.status, task_type=args.type, limit=page_size, next_token=token, owner=args.owner
            )
            for task in page.items:
                console.print(json.dumps(task.as_json(), sort_keys=True) if args.json else _row(task))
            shown += len(page.items)
            token = page.next_token
            if not token or shown >= args.max:
                break
    if token:
        console.note(f"more tasks: repeat with --next-token {token}")
    return EXIT_OK


def cmd_dlq_list(args: argparse.Namespace, console: Console) -> int:
    from mistersmith_client.aws import DeadLetters

    dead_letters = DeadLetters(_settings(args))
    for queue in _queues(dead_letters, args.queue):
        console.print(f"{queue.name}\t{dead_letters.depth(queue)} message(s)\t{queue.url}")
        for letter in dead_letters.peek(queue, args.show) if args.show else []:
            console.print(
                f"  {letter.message_id}\ttask={letter.task_id or '?'}\ttype={letter.task_type or '?'}"
                f"\treceives={letter.receive_count}"
            )
    return EXIT_OK


def cmd_dlq_redrive(args: argparse.Namespace, console: Console) -> int:
    from mistersmith_client.aws import DeadLetters

    dead_letters = DeadLetters(_settings(args))
    for queue in _queues(dead_letters, args.queue):
        if queue.source_url is None and args.queue == "all":
            continue
        result = dead_letters.redrive(queue, args.max)
        if result.task_handle:
            console.print(f"{queue.name}\tmove task started ({result.task_handle}); SQS moves the messages")
        else:
            console.print(f"{queue.name}\t{result.moved} message(s) moved back to {queue.source_url}")
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _wait_and_report(
    api: MisterSmithClient, task_ids: Sequence[str], args: argparse.Namespace, console: Console
) -> int:
    progress = Progress(console.err, quiet=args.quiet)
    try:
        records = api.wait(
            task_ids, timeout_seconds=args.timeout, interval_seconds=args.interval, on_update=progress.update
        )
    except WaitTimeout as timeout:
        progress.done()
        for task_id, task in timeout.pending.items():
            console.print(f"{task_id}\t{task.status}")
        raise
    progress.done()
    for task in records.values():
        error = f"\t{task.error.get('type')}: {task.error.get('message')}" if task.error else ""
        console.print(f"{task.id}\t{task.status}{error}")
    return EXIT_OK if all(task.succeeded for task in records.values()) else EXIT_TASK_FAILED


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


def _row(task: Task) -> str:
    return f"{task.id:<34} {task.task_type:<8} {task.status:<14} {task.created_at}"


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
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(commands, common, waiting)
    _add_task_commands(commands, common, waiting)
    _add_dlq(commands, common)
    return parser


def _shared_options() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The endpoint and auth options of every command, and the waiting options of those that wait."""
    common = argparse.ArgumentParser(add_help=False)
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

    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--timeout", type=float, default=600, help="seconds to wait before giving up (600)")
    waiting.add_argument("--interval", type=float, default=1.0, help="seconds between polls (1)")
    waiting.add_argument("--quiet", action="store_true", help="no progress display")
    return common, waiting


def _add_submit(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    waiting: argparse.ArgumentParser,
) -> None:
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
    submit.add_argument("--wait", action="store_true", help="then wait for the task (exit code = outcome)")
    submit.set_defaults(run=cmd_submit)


def _add_task_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    waiting: argparse.ArgumentParser,
) -> None:
    status = commands.add_parser("status", parents=[common], help="print a task's record as JSON")
    status.add_argument("task_id")
    status.add_argument("--owner", help=OWNER_HELP)
    status.set_defaults(run=cmd_status)

    wait = commands.add_parser(
        "wait", parents=[common, waiting], help="wait for tasks; exit 0 only if all succeeded"
    )
    wait.add_argument("task_ids", nargs="+", metavar="ID")
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
    result.set_defaults(run=cmd_result)

    cancel = commands.add_parser("cancel", parents=[common, waiting], help="cancel tasks")
    cancel.add_argument("task_ids", nargs="+", metavar="ID")
    cancel.add_argument(
        "--wait", action="store_true", help="then wait until each has ended (exit 0 if all were cancelled)"
    )
    cancel.add_argument("--owner", help=OWNER_HELP)
    cancel.set_defaults(run=cmd_cancel)

    listing = commands.add_parser("list", parents=[common], help="list tasks, newest first within a status")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--type", choices=TASK_TYPES)
    listing.add_argument("--owner", help=OWNER_HELP)
    listing.add_argument(
        "--page-size", type=_page_size, default=50, help="tasks per request (1-100, default 50)"
    )
    listing.add_argument("--max", type=_positive, default=200, help="stop after this many tasks (200)")
    listing.add_argument("--next-token", help="continue where an earlier listing stopped")
    listing.add_argument("--json", action="store_true", help="one JSON record per line")
    listing.set_defaults(run=cmd_list)


def _add_dlq(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    dlq = commands.add_parser(
        "dlq",
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

"""The whole system on one machine: moto on loopback as AWS, the intake API on uvicorn, the other
functions invoked by their template triggers, and worker processes sized by the autoscaler; all
their lines in one stream, each with its component's name, and the metrics of their EMF lines kept."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3
import uvicorn

from local_stack.console import Console, FunctionsLog, LogFollower, component
from local_stack.emf import MetricsCollector
from local_stack.lambda_runtime import (
    InvocationKeys,
    LambdaContext,
    component_name,
    invocation,
    invoke,
    module_of,
)
from local_stack.moto_server import MotoServer
from local_stack.provision import Provisioner, Trigger
from local_stack.streams import StreamMapping, StreamPoller
from local_stack.template import ROOT, Template
from mistersmith_client.console_server import CONSOLE_PAGE, CONSOLE_PATH

EVENTS_DIR = ROOT / "events"
# No collector sidecar runs locally, so local workers export no spans (WorkerSettings' default).
LOCAL_PARAMETERS = {"WorkerTracing": "false"}
WORKER_CONTAINER = "worker"
STATE_DIR = ROOT / ".local"
# The in-process functions' lines, beside the workers' worker-N.log files.
FUNCTIONS_LOG = "functions.log"


@dataclass(frozen=True)
class LocalConfig:
    host: str = "127.0.0.1"
    moto_port: int = 5000
    api_port: int = 3000
    # The autoscaler's desired count decides how many workers run, up to this cap on one machine.
    max_workers: int = 3
    # The scheduled functions' period (the template's rate(1 minute)); tests run them every few seconds.
    schedule_seconds: float = 60.0
    # How often the worker supervisor matches the workers to the service's desired count.
    supervise_seconds: float = 2.0
    # Short polls let local workers and triggers stop within a second or two.
    receive_wait_seconds: int = 1
    log_level: str = "INFO"
    log_dir: Path = STATE_DIR / "logs"
    # `component | level | message | task id` on the console instead of the whole JSON lines.
    compact: bool = False
    # Template parameter values, as `sam deploy --parameter-overrides` would give them.
    parameters: dict[str, str] = field(default_factory=dict)
    # Extra worker settings (WorkerSettings' variables), beyond what the task definition sets.
    worker_environment: dict[str, str] = field(default_factory=dict)


class LocalStack:
    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        # Tests may lower it to 0 to run workers of their own.
        self.max_workers = self.config.max_workers
        self.worker_ids: dict[int, str] = {}
        self.template = Template.load(overrides=LOCAL_PARAMETERS | self.config.parameters)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self._moto: MotoServer | None = None
        self._api: uvicorn.Server | None = None
        self.env: dict[str, str] = {}
        self.worker_env: dict[str, str] = {}
        # Every component's lines in one stream, prefixed with its name; EMF lines kept as metrics.
        functions = [name for name, _ in self.template.of_type("AWS::Serverless::Function")]
        width = max(len(component_name(self.template, function)) for function in functions)
        self.console = Console(
            sys.stdout, width=max(width, len(f"worker-{self.max_workers}")), compact=self.config.compact
        )
        self.metrics = MetricsCollector()
        self.console.add_listener(self.metrics.feed)
        self._follower = LogFollower(self.console)
        self._functions_log: FunctionsLog | None = None
        # Supervised workers' indexes, so that a replacement takes a free name and log file.
        self._worker_index: dict[int, int] = {}
        # The functions' stream mappings (the router's on the task table).
        self.stream_pollers: list[StreamPoller] = []
        # One session and one client per service for the stack's own calls and its tests'.
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    @property
    def api_url(self) -> str:
        return f"http://{self.config.host}:{self.config.api_port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.config.host}:{self.config.moto_port}"

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        # moto's server logs every request; the stack's own output is what a person needs to read.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = MotoServer(self.config.host, self.config.moto_port)
        self._moto.start()
        aws = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.template.region,
            "AWS_REGION": self.template.region,
            # No X-Ray daemon locally: Powertools' tracer stays off.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        os.environ.update(aws)
        triggers = Provisioner(self.template, self.client).create_all()
        functions = [name for name, _ in self.template.of_type("AWS::Serverless::Function")]
        self.env = (
            aws
            | {
                name: value
                for function in functions
                for name, value in self.template.function_environment(function).items()
            }
            | {"LOG_LEVEL": self.config.log_level}
            # No API Gateway authenticates local requests: a header names the caller (callers.py).
            | {"LOCAL_CALLER_HEADER": "true"}
        )
        # This process plays every Lambda, so it carries their (non-conflicting) variables.
        os.environ.update(self.env)
        # Imported only now: the shared Logger reads its service name and level from the variables above.
        from mistersmith.observability import logger

        # Imported earlier (a test session's other tests): the functions' service name on lines and metrics.
        if logger.service != self.env["POWERTOOLS_SERVICE_NAME"]:
            logger.service = self.env["POWERTOOLS_SERVICE_NAME"]
            logger.append_keys(service=logger.service)
        logger.registered_handler.addFilter(InvocationKeys())
        # Powertools' Logger writes through a StreamHandler (to stdout).
        self.console.attach(cast("logging.StreamHandler[Any]", logger.registered_handler))
        self._functions_log = FunctionsLog(self.config.log_dir / FUNCTIONS_LOG)
        self.console.add_listener(self._functions_log.feed)
        self._follower.start()
        self.worker_env = (
            aws
            | self._container_environment()
            | {
                "RECEIVE_WAIT_SECONDS": str(self.config.receive_wait_seconds),
                "HEALTH_HOST": self.config.host,
                "HEALTH_PORT": "0",
                "LOG_LEVEL": self.config.log_level,
            }
            | self.config.worker_environment
        )
        self._start_api()
        for trigger in triggers:
            if isinstance(trigger, StreamMapping):
                self._spawn(f"stream-{trigger.function}", self._stream_poller(trigger).poll)
            else:
                self._spawn(f"trigger-{trigger.function}-{trigger.kind}", self._runner_for(trigger))
        self._spawn("worker-supervisor", self._supervise_workers)

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for thread in self.threads:
            thread.join(timeout=10)
        self._follower.stop()
        if self._api:
            self._api.should_exit = True
        if self._moto:
            self._moto.stop()
        self.console.detach()
        if self._functions_log:
            self._functions_log.close()

    def read_worker_logs(self) -> None:
        """Reads what the workers have written so far into the console (and the metrics) now."""
        self._follower.poll()

    def write_env(self, path: Path = STATE_DIR / "env") -> Path:
        """A dotenv file with what a function, a worker or a test needs to join this stack."""
        path.parent.mkdir(parents=True, exist_ok=True)
        values = self.env | self.worker_env | {"MISTERSMITH_API_URL": self.api_url}
        return _write_shell_env(path, values)

    def write_client_env(self, path: Path = STATE_DIR / "client.env") -> Path:
        """Only what a client needs (no AWS_* variables), safe to source where `aws` and `sam` run."""
        return _write_shell_env(path, {"MISTERSMITH_API_URL": self.api_url})

    def client(self, service: str) -> Any:
        """This stack's client for `service`, made once: a new session reloads botocore's endpoint and
        service data, about 100 ms of CPU and tens of thousands of objects for the cyclic GC, which
        pause every thread of the process (the in-process workers' heartbeats on a 3 s test lease)."""
        with self._clients_lock:  # a session must not make clients in two threads at once
            if self._session is None:  # made once the AWS_* environment points at this stack
                self._session = boto3.session.Session(region_name=self.template.region)
            if service not in self._clients:
                self._clients[service] = self._session.client(service)
            return self._clients[service]

    def _container_environment(self) -> dict[str, str]:
        variables: dict[str, str] = {}
        for _, properties in self.template.of_type("AWS::ECS::TaskDefinition"):
            for container in self.template.present(properties["ContainerDefinitions"]):
                if container["Name"] != WORKER_CONTAINER:
                    continue
                for item in self.template.present(container.get("Environment", [])):
                    variables[item["Name"]] = str(self.template.resolve(item["Value"]))
        return variables

    def _start_api(self) -> None:
        function = next(
            name
            for name, properties in self.template.of_type("AWS::Serverless::Function")
            if any(event["Type"] == "Api" for event in properties.get("Events", {}).values())
        )
        module = module_of(self.template, function)
        config = uvicorn.Config(
            with_console(as_function(component_name(self.template, function), function, module.app)),
            host=self.config.host,
            port=self.config.api_port,
            log_level="warning",
            lifespan="off",
        )
        self._api = uvicorn.Server(config)
        thread = threading.Thread(target=self._api.run, name="intake-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not self._api.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the intake API did not start on {self.api_url}")
            time.sleep(0.02)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guarded(name, target), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _guarded(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self.stopping.is_set():
                try:
                    target()
                except Exception as error:  # a local trigger keeps going, as the real service would
                    print(f"[{name}] {type(error).__name__}: {error}", file=sys.stderr)
                    self.stopping.wait(1)

        return run

    def _stream_poller(self, mapping: StreamMapping) -> StreamPoller:
        poller = StreamPoller(
            mapping,
            self.client("dynamodbstreams"),
            lambda event: invoke(self.template, mapping.function, event),
            self.stopping,
            sqs=self.client("sqs"),
        )
        self.stream_pollers.append(poller)
        return poller

    def stream_deliveries(self) -> int:
        """The invocations the stream mappings have made so far (retries of a batch included)."""
        return sum(poller.deliveries for poller in self.stream_pollers)

    def _runner_for(self, trigger: Trigger) -> Callable[[], None]:
        if trigger.kind == "schedule":
            return lambda: self._run_schedule(trigger)
        return lambda: self._run_queue(trigger)

    def _run_schedule(self, trigger: Trigger) -> None:
        event = json.loads((EVENTS_DIR / f"{_event_prefix(trigger.function)}_schedule.json").read_text())
        invoke(self.template, trigger.function, event)
        self.stopping.wait(self.config.schedule_seconds)

    def _run_queue(self, trigger: Trigger) -> None:
        sqs = self.client("sqs")
        while not self.stopping.is_set():
            messages = sqs.receive_message(
                QueueUrl=trigger.queue_url,
                MaxNumberOfMessages=min(trigger.batch_size, 10),
                WaitTimeSeconds=self.config.receive_wait_seconds,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                continue
            if trigger.kind == "eventbridge":
                # Lambda gets the event itself; a failure leaves the message for a retry.
                for message in messages:
                    invoke(self.template, trigger.function, json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=trigger.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                self._deliver_batch(sqs, trigger, messages)

    def _deliver_batch(self, sqs: Any, trigger: Trigger, messages: list[dict[str, Any]]) -> None:
        event = {
            "Records": [sqs_record(message, trigger.queue_arn, self.template.region) for message in messages]
        }
        response = invoke(self.template, trigger.function, event) or {}
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=trigger.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _supervise_workers(self) -> None:
        service_id, properties = next(self.template.of_type("AWS::ECS::Service"))
        service = self.client("ecs").describe_services(
            cluster=self.template.resolve(properties["Cluster"]),
            services=[self.template.attributes[service_id]["Name"]],
        )["services"][0]
        self.workers = [worker for worker in self.workers if worker.poll() is None]
        wanted = min(service["desiredCount"], self.max_workers)
        while len(self.workers) < wanted:
            taken = {self._worker_index[worker.pid] for worker in self.workers}
            index = min(set(range(len(self.workers) + 1)) - taken)
            worker = self.start_worker(index)
            self._worker_index[worker.pid] = index
            self.workers.append(worker)
        for surplus in self.workers[wanted:]:
            surplus.terminate()
        self.stopping.wait(self.config.supervise_seconds)

    def start_worker(self, index: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """One more `python -m fargate_worker` on this stack, logging to .local/logs and the console."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        worker_id = f"local-worker-{index}-{time.monotonic_ns()}"
        path = self.config.log_dir / f"worker-{index}.log"
        # The child keeps its own copy of the file; this process only needs where its lines start.
        with path.open("ab") as log:
            since = log.tell()
            process = subprocess.Popen(
                [sys.executable, "-m", "fargate_worker"],
                # Unbuffered: a worker killed with -9 still leaves every line it logged.
                env=os.environ
                | self.worker_env
                | {"WORKER_ID": worker_id, "PYTHONUNBUFFERED": "1"}
                | (env or {}),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.worker_ids[process.pid] = worker_id
        self._follower.follow(path, f"worker-{index}", process, since)
        return process


def _write_shell_env(path: Path, values: dict[str, str]) -> Path:
    """NAME=value lines, each value shell-quoted: `set -a; . FILE; set +a` gives back exactly these."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(values.items())))
    return path


def as_function(name: str, logical_id: str, app: Any) -> Any:
    """The API app as its function: its lines carry the function's component and Lambda names
    (uvicorn calls the app, not the handler), one invocation per request."""

    async def run(scope: dict[str, Any], receive: Any, send: Any) -> None:
        with component(name), invocation(LambdaContext(function_name=logical_id)):
            await app(scope, receive, send)

    return run


def with_console(app: Any) -> Any:
    """The API with the console page beside it at /console/ (the page calls the API on its origin)."""

    async def run(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in ("/console", CONSOLE_PATH):
            await app(scope, receive, send)
            return
        status, body, headers = (
            200,
            CONSOLE_PAGE.read_bytes(),
            [(b"content-type", b"text/html; charset=utf-8")],
        )
        if scope["path"] != CONSOLE_PATH:
            status, body, headers = 308, b"", [(b"location", CONSOLE_PATH.encode())]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return run


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping delivers it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _event_prefix(function: str) -> str:
    return function.removesuffix("Function").lower()

"""Task models: the API's submissions and uploads, per-type payloads and results, the task record and
its lifecycle."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeGuard

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from mistersmith.observability import trace_root
from mistersmith.ruff_rules import RUFF_VERSION, rule_selectors

# A new task's id starts with a letter or digit, so "." and ".." can never name one.
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
# What GET and DELETE accept: the first contract's ids, so that tasks submitted under it stay readable.
TaskRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
# An owned task's table key is its id behind a fixed-length stand-in for its owner (see task_key).
OWNER_SCOPE_CHARS = 16
TASK_KEY_PATTERN = rf"^[A-Za-z0-9._:-]{{1,{OWNER_SCOPE_CHARS + 1 + 128}}}$"
TaskKey = Annotated[str, StringConstraints(pattern=TASK_KEY_PATTERN)]


def is_task_key(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(TASK_KEY_PATTERN, value) is not None


def owner_scope(owner: str) -> str:
    """A key-safe, fixed-length stand-in for an owner: ARNs hold "/" and run long."""
    return hashlib.sha256(owner.encode()).hexdigest()[:OWNER_SCOPE_CHARS]


def task_key(owner: str, task_id: str) -> str:
    """The table key of `owner`'s task `task_id`: two callers' equal ids never meet."""
    return f"{owner_scope(owner)}.{task_id}"


class TaskType(StrEnum):
    COMPILE = "compile"
    ANALYZE = "analyze"
    EXECUTE = "execute"


TASK_TYPES = frozenset(task_type.value for task_type in TaskType)


def known_task_type(value: object) -> str:
    """The task type as a metric dimension: a client's arbitrary string must not create metrics."""
    return value if isinstance(value, str) and value in TASK_TYPES else "invalid"


class TaskStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    DEAD_LETTERED = "DEAD_LETTERED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.DEAD_LETTERED}
)

# QUEUED -> FAILED is the router rejecting a task it cannot route; RUNNING -> QUEUED is a release.
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset(
        {TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.DEAD_LETTERED}
    ),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.QUEUED,
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.DEAD_LETTERED,
        }
    ),
    **{status: frozenset() for status in TERMINAL_STATUSES},
}


def sources_allowed_into(target: TaskStatus) -> frozenset[TaskStatus]:
    """The statuses from which a task may move to `target`."""
    return frozenset(source for source, targets in ALLOWED_TRANSITIONS.items() if target in targets)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_surrogate(key) or _holds_surrogate(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_surrogate(item) for item in value)
    return False


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        # JSON lets "\ud800" through; UTF-8 cannot hold it, so it would fail later, when stored.
        if _holds_surrogate(value):
            raise ValueError(
                "text must be valid Unicode: a lone surrogate (\\ud800-\\udfff) cannot be encoded"
            )
        return value


def checked_relative_path(path: str) -> str:
    """The path normalised; ValueError when it is absolute or climbs out of its directory."""
    normalised = posixpath.normpath(path)
    if not path or path.startswith("/") or "\\" in path or normalised.startswith(".."):
        raise ValueError(f"file path {path!r} must be relative and stay inside the work directory")
    return normalised


# Linux's NAME_MAX and PATH_MAX, in bytes: a longer name or path can never be written.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095


def _checked_relative_paths(files: dict[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    given: dict[str, str] = {}
    for path, text in files.items():
        normalised = checked_relative_path(path)
        if normalised in checked:
            raise ValueError(
                f"file paths {given[normalised]!r} and {path!r} name the same file {normalised!r}"
            )
        encoded = normalised.encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
            raise ValueError(
                f"file path {path[:200]!r} is too long: names up to {MAX_NAME_BYTES} bytes,"
                f" paths up to {MAX_PATH_BYTES}"
            )
        checked[normalised], given[normalised] = text, path
    return checked


RelativeFiles = Annotated[dict[str, str], AfterValidator(_checked_relative_paths)]
MAX_SOURCE_FILES = 1000
SourceFiles = Annotated[RelativeFiles, Field(min_length=1, max_length=MAX_SOURCE_FILES)]
S3_URI = re.compile(
    r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[A-Za-z0-9!_.*'()/-]{1,1024})$"
)
SourceUri = Annotated[
    str,
    StringConstraints(pattern=S3_URI.pattern),
    Field(description="A zip or tar (optionally gzip-compressed) in the artifacts bucket, e.g. an upload."),
]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = S3_URI.match(uri)
    if match is None:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return match["bucket"], match["key"]


def _sources_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The schema says what the validator does: `files` and `source_uri` exclude each other (one of
    them is required where `_sources_required`), and neither may be null."""
    properties = schema["properties"]
    for name in ("files", "source_uri"):
        options = properties[name].pop("anyOf", None)
        if options:
            properties[name].update(next(option for option in options if option.get("type") != "null"))
        properties[name].pop("default", None)
    either = [{"required": ["files"]}, {"required": ["source_uri"]}]
    if getattr(model, "_sources_required", True):
        schema["oneOf"] = either
    else:
        schema["not"] = {"required": ["files", "source_uri"]}


class _Sources(StrictModel):
    """Files inline or an archive in the bucket (`source_uri`), never both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_sources_schema)

    files: SourceFiles | None = None
    source_uri: SourceUri | None = None
    # Whether a payload may have neither (execute may run a command without files).
    _sources_required: ClassVar[bool] = True

    @field_validator("files", "source_uri", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Left out is how "none" is said; an explicit null would be a third way the schema cannot show.
        if value is None:
            raise ValueError("must not be null: leave the field out instead")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> _Sources:
        if self.files is not None and self.source_uri is not None:
            raise ValueError("give either files or source_uri, not both")
        if self._sources_required and self.files is None and self.source_uri is None:
            raise ValueError("give files or a source_uri")
        return self


class FilesPayload(_Sources):
    pass


class ExecutePayload(_Sources):
    _sources_required: ClassVar[bool] = False
    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    stdin: str | None = None
    env: dict[str, str] | None = None
    files: RelativeFiles | None = None
    # At least 0.1 s: a shorter limit cannot even start an interpreter.
    timeout_seconds: Annotated[float, Field(ge=0.1, le=43_200, strict=True)] | None = None


class CompilePayload(FilesPayload):
    language: Annotated[str, Field(min_length=1, max_length=32)] = "python"


def _known_rule_selector(selector: str) -> str:
    if selector not in rule_selectors():
        raise ValueError(
            f"{selector!r} is not a stable ruff {RUFF_VERSION} rule code or prefix (such as F401, E9, S or ALL)"
        )
    return selector


RuleSelector = Annotated[str, AfterValidator(_known_rule_selector)]
# ruff's default: pyflakes, pycodestyle errors, mccabe, bugbear and the bandit-derived security rules.
DEFAULT_RULES = ("F", "E", "C90", "B", "S")
PythonVersion = Literal["3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]


# C sources and headers: cppcheck analyzes them, and only the worker image has it.
C_SOURCE_SUFFIXES = (".c", ".h")


def has_c_sources(files: dict[str, Any]) -> bool:
    return any(path.endswith(C_SOURCE_SUFFIXES) for path in files)


class AnalyzePayload(FilesPayload):
    select: Annotated[
        list[RuleSelector],
        Field(
            min_length=1,
            max_length=100,
            description="ruff rule codes or prefixes to check the Python files with; default F, E, C90, B, S.",
        ),
    ] = list(DEFAULT_RULES)
    ignore: Annotated[
        list[RuleSelector],
        Field(max_length=100, description="ruff rule codes or prefixes to leave out of `select`."),
    ] = []
    target_version: Annotated[
        PythonVersion, Field(description="The oldest Python the code must run on, for ruff's rules.")
    ] = "3.12"


PAYLOAD_MODELS: dict[TaskType, type[_Sources]] = {
    TaskType.EXECUTE: ExecutePayload,
    TaskType.COMPILE: CompilePayload,
    TaskType.ANALYZE: AnalyzePayload,
}


class PayloadRef(StrictModel):
    """A claim check: the payload JSON stored aside in the artifacts bucket."""

    bucket: str
    key: str
    sha256: str
    size: int


class _TaskRequest(StrictModel):
    id: TaskId | None = None
    retry_of: Annotated[
        TaskId | None, Field(description="The task this one runs again (mistersmith retry).")
    ] = None


class ExecuteRequest(_TaskRequest):
    task_type: Literal["execute"]
    payload: ExecutePayload


class CompileRequest(_TaskRequest):
    task_type: Literal["compile"]
    payload: CompilePayload


class AnalyzeRequest(_TaskRequest):
    task_type: Literal["analyze"]
    payload: AnalyzePayload


TaskRequest = Annotated[ExecuteRequest | CompileRequest | AnalyzeRequest, Field(discriminator="task_type")]
TASK_REQUEST_ADAPTER: TypeAdapter[ExecuteRequest | CompileRequest | AnalyzeRequest] = TypeAdapter(TaskRequest)
TaskRequestModel = ExecuteRequest | CompileRequest | AnalyzeRequest

# An object that POST /uploads handed out: the API's bucket, under uploads/.
UPLOAD_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>uploads/[A-Za-z0-9._-]{1,200})$")


class UploadedTaskRequest(StrictModel):
    """A task whose payload was uploaded first (POST /uploads, then PUT to the URL it returned)."""

    id: TaskId | None = None
    task_type: Literal["execute", "compile", "analyze"]
    payload_uri: Annotated[
        str,
        StringConstraints(pattern=UPLOAD_URI.pattern),
        Field(description="The `source_uri` that POST /uploads returned, after the PUT succeeded."),
    ]


def _submission_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return "uploaded" if isinstance(value, UploadedTaskRequest) else getattr(value, "task_type", None)
    if not isinstance(value, dict):
        return None
    if "payload_uri" in value:
        return "uploaded"
    task_type = value.get("task_type")
    # Only a string can name a tag; anything else is reported as a missing tag, not a crash.
    return task_type if isinstance(task_type, str) else None


TaskSubmission = Annotated[
    Annotated[ExecuteRequest, Tag("execute")]
    | Annotated[CompileRequest, Tag("compile")]
    | Annotated[AnalyzeRequest, Tag("analyze")]
    | Annotated[UploadedTaskRequest, Tag("uploaded")],
    Discriminator(
        _submission_tag,
        custom_error_type="invalid_task_type",
        custom_error_message="task_type must be one of execute, compile, analyze",
    ),
]


class UploadRequest(StrictModel):
    content_type: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")
    ] = "application/json"


class UploadTicket(BaseModel):
    """Where and how to PUT an upload, and the URI that a task then names."""

    upload_id: str
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str]
    expires_at: str
    source_uri: str


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_fingerprint(task_type: str, payload: dict[str, Any]) -> str:
    """Identifies a submission's body, so that a retried POST with the same id is recognised."""
    return hashlib.sha256(canonical_json({"task_type": task_type, "payload": payload}).encode()).hexdigest()


# The format of messages and records this code writes. 1 (the field absent): before leases had
# tokens and the router marked what it routed. Fields are only ever added, so every version reads
# every other: an old worker ignores what it does not know, a new one defaults what is missing.
FORMAT_VERSION = 2


class TaskMessage(BaseModel):
    """What travels on the bus (detail of `Worker Task`) and in the queues."""

    format_version: int = 1
    id: TaskKey
    task_type: str
    payload: dict[str, Any] | None = None
    payload_ref: PayloadRef | None = None
    # X-Ray trace header (Root=...;Parent=...;Sampled=...) of the request that submitted the task.
    trace_header: str | None = None
    # Travels with the task, so that a record recreated from the message keeps its owner.
    owner: str | None = None


class TaskError(BaseModel):
    type: str
    message: str


class Diagnostic(BaseModel):
    file: str
    line: int
    message: str


class ExecuteResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    duration_ms: int
    # The whole output, when it was longer than the record keeps inline.
    stdout_uri: str | None = None
    stderr_uri: str | None = None


class CompileResult(BaseModel):
    ok: bool
    diagnostics: list[Diagnostic]
    artifact_uri: str | None = None


class Finding(Diagnostic):
    """One analyzer finding: a Diagnostic (`file`, `line`, `message`) and where it comes from."""

    tool: Literal["ruff", "cppcheck"]
    code: str = Field(description="The tool's rule code: F401, S602, C901, invalid-syntax, nullPointer, ...")
    column: int | None = Field(default=None, description="1-based, where the finding starts.")
    end_line: int | None = None
    end_column: int | None = Field(default=None, description="1-based, just past the finding's end.")
    severity: Literal["error", "warning", "style", "performance", "portability", "information"] = Field(
        description="ruff: error for a syntax error, warning for any rule. cppcheck: its own severity."
    )
    fix_available: bool = Field(description="Whether the tool can fix it automatically (ruff --fix).")


class AnalyzeResult(BaseModel):
    files: int
    lines: int
    code_lines: int
    functions: int
    classes: int
    max_complexity: int
    findings: list[Finding] = Field(description="The first findings, sorted by file and position.")
    findings_total: int = Field(description="Every finding, inline or not.")
    findings_uri: str | None = Field(
        default=None, description="All findings as a JSON array in the bucket, when not all are inline."
    )
    analyzers: dict[str, str] = Field(description="The version of each tool that ran, by name.")


class _ResultSchema:
    """Leaves `result` a plain object to validate, and names analyze's result shape in its schema."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        analyze = handler(AnalyzeResult.__pydantic_core_schema__)
        return {"anyOf": [analyze, *handler(core_schema)["anyOf"]], "title": "Result"}


class TaskRecord(BaseModel):
    """The task as clients see it."""

    # A key's alphabet and length: a task from the bus is shown under its key, which may be long.
    id: TaskKey
    task_type: str
    status: TaskStatus
    created_at: str
    updated_at: str
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    result: Annotated[dict[str, Any] | None, _ResultSchema()] = None
    error: TaskError | None = None
    trace_id: str | None = None
    # Set by DELETE on a RUNNING task; its worker sees it at the next heartbeat and stops.
    cancel_requested: bool | None = None
    # The worker that runs it (while RUNNING) or ran it.
    worker: str | None = None
    retry_of: TaskId | None = None
    # Who submitted it (see callers.py); none on tasks from the bus or from before owners were kept.
    owner: str | None = None


class StoredTask(TaskRecord):
    """The task as the state table holds it: the record plus what workers and intake need."""

    format_version: int = 1
    # id is the table key: task_key(owner, id) for an owned task, the id itself for an unowned one.
    fingerprint: str | None = None
    payload: dict[str, Any] | None = None
    payload_ref: PayloadRef | None = None
    # The lease holder: set by a claim, cleared when the task ends or is released.
    worker_id: str | None = None
    lease_expires_at: float | None = None
    # Which claim holds the lease: a holder's resent claim is recognised, a duplicate's is not.
    lease_token: str | None = None
    # When the reconciler sent the task to a queue (the table's stream routes new tasks unnoted).
    routed_at: str | None = None
    # The region whose intake or router wrote the record: only that region's stream routes it (a
    # global table's every replica sees every insert).
    region: str | None = None
    # Times the reconciler put the task back after its lease ran out with no message left to run it.
    recoveries: int = 0
    # The status the latest claim took the task from: RUNNING means the attempt before it lost its worker.
    claimed_from: TaskStatus | None = None
    # The workers of the attempts, in order (a dead letter names them).
    attempt_workers: list[str] = []
    # After an attempt lost its worker, the next ones run alone on theirs: a task that kills its
    # worker then does so alone, and only it is dead-lettered, not what shared its worker.
    isolate: bool = False
    trace_header: str | None = None
    # Epoch seconds after which DynamoDB's TTL deletes a finished task (Lifecycle sets it).
    expires_at: int | None = None

    @classmethod
    def queued(cls, message: TaskMessage, now: str, *, region: str | None = None) -> StoredTask:
        """A new QUEUED record for a task that arrived as a message rather than through intake."""
        fingerprint = None
        if message.payload is not None and message.task_type in TASK_TYPES:
            fingerprint = request_fingerprint(TaskType(message.task_type), message.payload)
        return cls(
            format_version=FORMAT_VERSION,
            id=message.id,
            task_type=message.task_type,
            status=TaskStatus.QUEUED,
            created_at=now,
            updated_at=now,
            fingerprint=fingerprint,
            payload=message.payload,
            payload_ref=message.payload_ref,
            trace_id=trace_root(message.trace_header),
            trace_header=message.trace_header,
            owner=message.owner,
            region=region,
        )

    @property
    def public_id(self) -> str:
        """The id its owner chose (the key without the owner's scope)."""
        return self.id.removeprefix(f"{owner_scope(self.owner)}.") if self.owner else self.id

    def public(self) -> TaskRecord:
        fields = self.model_dump(include=set(TaskRecord.model_fields))
        return TaskRecord.model_validate(
            fields | {"id": self.public_id, "worker": self.worker or self.worker_id}
        )

    def message(self) -> TaskMessage:
        return TaskMessage(
            format_version=FORMAT_VERSION,
            id=self.id,
            task_type=self.task_type,
            payload=self.payload,
            payload_ref=self.payload_ref,
            trace_header=self.trace_header,
            owner=self.owner,
        )


class TaskPage(BaseModel):
    items: list[TaskRecord]
    next_token: str | None = None


# ---------------------------------------------------------------- GET /stats


class ScalingDecisionEntry(BaseModel):
    """One autoscaler decision with the readings it was made on (kept an hour and more)."""

    at: str
    desired: int
    previous: int
    reason: str
    changed: bool
    visible: int
    in_flight: int
    delayed: int
    running: int
    pending: int


class QueueStats(BaseModel):
    visible: int
    in_flight: int
    delayed: int
    dead_letters: int | None = Field(default=None, description="Messages waiting in the queue's DLQ.")


class WorkerStats(BaseModel):
    desired: int
    running: int
    pending: int


class TaskCounts(BaseModel):
    scope: Literal["all", "caller"] = Field(description="Whose tasks are counted.")
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_status_and_type: dict[str, dict[str, int]]


class StatsReport(BaseModel):
    generated_at: str
    queues: dict[str, QueueStats] = Field(description="Depth per queue (work, analyze) and of its DLQ.")
    dead_letter_queues: dict[str, int] = Field(description="Messages waiting per dead-letter queue.")
    workers: WorkerStats | None = None
    scaling_decisions: list[ScalingDecisionEntry] = Field(description="The last hour's, oldest first.")
    tasks: TaskCounts | None = None
    unavailable: list[str] = Field(
        default_factory=list, description="What could not be read this time (its part is left out)."
    )

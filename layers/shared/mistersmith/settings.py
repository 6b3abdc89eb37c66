"""Configuration: one validated settings model per process, read from the environment once."""

from __future__ import annotations

import socket
import uuid
from functools import cache
from typing import Annotated, TypeVar

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mistersmith.callers import principal
from mistersmith.scaling import DEFAULT_POLICY, SEED_STEPS, PolicyKind, ScalingPolicy, StepTable
from mistersmith.work.limits import Confinement, WorkLimits

NonEmpty = Annotated[str, Field(min_length=1)]
# A worker's tasks at once when CONCURRENCY is unset (see WorkerSettings.concurrency).
DEFAULT_CONCURRENCY = 4
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)


class TableSettings(_Settings):
    task_table_name: NonEmpty


class BusSettings(_Settings):
    event_bus_name: NonEmpty


class BucketSettings(_Settings):
    artifacts_bucket_name: NonEmpty


class WorkQueueSettings(_Settings):
    work_queue_url: NonEmpty


class LifecycleSettings(TableSettings, BusSettings):
    """What anything that changes a task's status needs: the table and the bus."""

    # Days a finished task's record is kept (TaskRetentionDays); at least one, so a result can be read.
    task_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Lambda's own AWS_REGION: written into new records, whose stream inserts only this region routes.
    aws_region: str | None = None


class SourceSettings(BucketSettings):
    """Limits of a `source_uri` archive: intake checks the size at submit, a worker again before reading."""

    source_archive_limit_bytes: Annotated[int, Field(ge=1024)] = WorkLimits().source_archive_bytes
    source_unpacked_limit_bytes: Annotated[int, Field(ge=1024)] = WorkLimits().source_unpacked_bytes


class IntakeSettings(LifecycleSettings, SourceSettings):
    # Below SQS / EventBridge's 1 MiB and DynamoDB's 400 KB item: bigger payloads go to S3.
    inline_payload_limit_bytes: Annotated[int, Field(gt=0, le=300_000)] = 64 * 1024
    # Under API Gateway's 10 MB and a synchronous Lambda's 6 MB request.
    max_payload_bytes: Annotated[int, Field(gt=0, le=6_000_000)] = 5_000_000
    # ApiAdminPrincipals: callers that see every caller's tasks (IAM ARNs or apikey:<id>, comma-separated).
    api_admin_principals: Annotated[frozenset[str], NoDecode] = frozenset()
    # Local stack only (never in the template): the caller header names the caller when no gateway did.
    local_caller_header: bool = False

    @field_validator("api_admin_principals", mode="before")
    @classmethod
    def _split_principals(cls, value: object) -> object:
        return (
            [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        )

    @field_validator("api_admin_principals")
    @classmethod
    def _as_callers(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(principal(item) for item in value)


class StatsSettings(TableSettings):
    """What GET /stats reads besides the table; a part whose names are missing is left out."""

    work_queue_url: str | None = None
    analyze_queue_url: str | None = None
    work_dlq_url: str | None = None
    analyze_dlq_url: str | None = None
    router_dlq_url: str | None = None
    cluster_name: str | None = None
    worker_service_name: str | None = None
    # Cheap to poll: every caller within this many seconds gets the same figures.
    stats_cache_seconds: Annotated[float, Field(ge=0, le=60)] = 5


class RouterSettings(LifecycleSettings, WorkQueueSettings):
    analyze_queue_url: NonEmpty
    # Bigger analyze payloads, and archives, go to the worker instead of the Lambda's 60 s.
    analyze_lambda_limit_bytes: Annotated[int, Field(ge=0)] = 64 * 1024


class ReconcilerSettings(RouterSettings):
    # The work queue's visibility timeout: a lease that ended this long ago had its message back.
    lease_seconds: Annotated[int, Field(ge=5, le=43_200)] = 300
    # The router's stream mapping gives up on an insert this old (RoutingMaximumRecordAgeSeconds):
    # a QUEUED task older than that, which the reconciler has not sent yet, is sent again.
    unrouted_after_seconds: Annotated[int, Field(ge=10)] = 3600
    # Re-sends after a lapsed lease before the task ends DEAD_LETTERED (as SQS's maxReceiveCount).
    max_recoveries: Annotated[int, Field(ge=1, le=1000)] = 3


class TaskRunnerSettings(LifecycleSettings, SourceSettings):
    """What any process that runs tasks needs: the analyze Lambda and the Fargate worker."""

    # Unique per process, so two workers on one host never share a lease.
    worker_id: NonEmpty = Field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    # Matches the visibility timeout of the queue the process reads (template.yaml sets both).
    # At least 5 s: the lease ends a margin (2 s or a tenth) before the message is visible again.
    lease_seconds: Annotated[int, Field(ge=5, le=43_200)] = 300
    execute_timeout_seconds: Annotated[float, Field(gt=0)] = 600
    # Retryable failures come back after 10 s, 20 s, 40 s ... at most this long.
    max_retry_delay_seconds: Annotated[int, Field(ge=0, le=43_200)] = 300
    # Captured per output stream; past the inline part it is kept in the bucket, not the record.
    output_limit_bytes: Annotated[int, Field(ge=1024)] = 1 << 20
    inline_output_bytes: Annotated[int, Field(ge=1024, le=100_000)] = 32 * 1024
    # The sandbox: what `execute` may run (names on its PATH or absolute paths) and what a child may use.
    execute_allowed_executables: Annotated[tuple[str, ...], NoDecode] = Confinement().allowed_executables
    child_memory_bytes: Annotated[int, Field(ge=16 << 20)] = Confinement().memory_bytes
    child_max_file_bytes: Annotated[int, Field(ge=1024)] = Confinement().max_file_bytes
    child_max_processes: Annotated[int, Field(ge=1)] = Confinement().max_processes
    child_uid_base: Annotated[int, Field(ge=1000, le=4_000_000_000)] = Confinement().child_uid_base
    child_disk_bytes: Annotated[int, Field(ge=1 << 20)] = Confinement().disk_bytes
    # Off by default: a child with the network reaches the sidecars, task metadata, the VPC and the internet.
    execute_allow_network: bool = False
    # Where run directories are made; unset: mistersmith-runs in the system's temporary directory.
    sandbox_scratch_root: str | None = None
    # CPU seconds per child process; unset: the wall timeout's.
    child_cpu_seconds: Annotated[int, Field(ge=1)] | None = None
    # The image's exec helper; when the file is missing children are forked (logged once).
    sandbox_exec_helper: str | None = Confinement().exec_helper

    @field_validator("execute_allowed_executables", mode="before")
    @classmethod
    def _split_executables(cls, value: object) -> object:
        return (
            tuple(item.strip() for item in value.split(",") if item.strip())
            if isinstance(value, str)
            else value
        )

    @property
    def confinement(self) -> Confinement:
        return Confinement(
            allowed_executables=self.execute_allowed_executables,
            memory_bytes=self.child_memory_bytes,
            max_file_bytes=self.child_max_file_bytes,
            max_processes=self.child_max_processes,
            child_uid_base=self.child_uid_base,
            disk_bytes=self.child_disk_bytes,
            allow_network=self.execute_allow_network,
            scratch_root=self.sandbox_scratch_root,
            cpu_seconds=self.child_cpu_seconds,
            exec_helper=self.sandbox_exec_helper,
        )

    @property
    def limits(self) -> WorkLimits:
        return WorkLimits(
            execute_timeout_seconds=self.execute_timeout_seconds,
            output_limit_bytes=self.output_limit_bytes,
            inline_output_bytes=self.inline_output_bytes,
            source_archive_bytes=self.source_archive_limit_bytes,
            source_unpacked_bytes=self.source_unpacked_limit_bytes,
            confinement=self.confinement,
        )


class AnalyzeSettings(TaskRunnerSettings):
    pass


class AutoscalerSettings(TableSettings, WorkQueueSettings):
    cluster_name: NonEmpty
    worker_service_name: NonEmpty
    scaling_steps: Annotated[StepTable, NoDecode] = StepTable.parse(SEED_STEPS)
    min_tasks: Annotated[int, Field(ge=0)] = 2
    max_tasks: Annotated[int, Field(ge=1)] = 1000
    cooldown_seconds: Annotated[int, Field(ge=0)] = 60
    scaling_policy: PolicyKind = DEFAULT_POLICY
    # backlog: acceptable latency; drain: the budget to clear what waits (seconds).
    scaling_latency_seconds: Annotated[float, Field(gt=0, le=86_400)] = 600
    # Expected seconds per task: backlog's divisor, drain's fallback until tasks finish.
    scaling_task_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60
    # Fargate start latency (pull, boot) that drain plans around.
    worker_start_seconds: Annotated[float, Field(ge=0, le=3_600)] = 60
    # drain: spare tasks = headroom x sqrt(busy tasks) (square-root staffing).
    scaling_headroom: Annotated[float, Field(ge=0, le=10)] = 0.5
    # Tasks one worker runs at once (the worker's CONCURRENCY): busy and capacity count in workers.
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = 1

    @field_validator("scaling_steps", mode="before")
    @classmethod
    def _parse_steps(cls, value: object) -> object:
        return StepTable.parse(value) if isinstance(value, str) else value

    @property
    def policy(self) -> ScalingPolicy:
        return ScalingPolicy(
            self.scaling_steps,
            self.min_tasks,
            self.max_tasks,
            cooldown_seconds=self.cooldown_seconds,
            kind=self.scaling_policy,
            latency_seconds=self.scaling_latency_seconds,
            task_seconds=self.scaling_task_seconds,
            start_seconds=self.worker_start_seconds,
            headroom=self.scaling_headroom,
            concurrency=self.worker_concurrency,
        )

    @field_validator("max_tasks")
    @classmethod
    def _max_not_below_min(cls, max_tasks: int, info: ValidationInfo) -> int:
        if max_tasks < info.data.get("min_tasks", 0):
            raise ValueError("max_tasks must be at least min_tasks")
        return max_tasks


class WorkerSettings(TaskRunnerSettings, WorkQueueSettings):
    # Tasks at once. A task mostly waits (on its sandboxed child, on AWS calls), so a worker keeps
    # several in flight whatever its vCPUs; CONCURRENCY x CHILD_MEMORY_BYTES should fit its memory.
    concurrency: Annotated[int, Field(ge=1, le=64)] = DEFAULT_CONCURRENCY
    # Below the container's stopTimeout (120 s) so that release and exit fit in what is left.
    drain_grace_seconds: Annotated[float, Field(ge=0, le=115)] = 90
    # Set by ECS inside a task; absent locally, where scale-in protection is a no-op and the shared
    # temporary directories (the developer's) are left as they are.
    ecs_agent_uri: str | None = None
    health_host: str = "0.0.0.0"  # noqa: S104 - the container's health check and load balancer reach it
    health_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # The ADOT collector sidecar (http://localhost:4318 in the task definition); unset: no tracing export.
    otel_exporter_otlp_endpoint: str | None = None
    receive_batch_size: Annotated[int, Field(ge=1, le=10)] = 10
    receive_wait_seconds: Annotated[int, Field(ge=0, le=20)] = 20


@cache
def load(model: type[SettingsT]) -> SettingsT:
    """Reads and validates `model` from the environment once per process."""
    return model()

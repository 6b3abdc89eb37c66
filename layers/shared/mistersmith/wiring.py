"""Builds the logic objects on their AWS adapters from a process's settings.

What every process builds is imported here; the rest inside the function that builds it, so that a
process loads only its own (the intake's first request does not load the worker's sandbox)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.adapters.eventbridge import EventBridgePublisher
from mistersmith.adapters.s3 import S3BlobStore
from mistersmith.lifecycle import Lifecycle
from mistersmith.ports import EventPublisher
from mistersmith.settings import (
    AutoscalerSettings,
    IntakeSettings,
    LifecycleSettings,
    ReconcilerSettings,
    RouterSettings,
    StatsSettings,
    TaskRunnerSettings,
)

if TYPE_CHECKING:
    from mistersmith.autoscaler import Autoscaler
    from mistersmith.intake import Intake
    from mistersmith.processing import TaskProcessor
    from mistersmith.reconciling import Reconciler
    from mistersmith.routing import Router
    from mistersmith.stats import Stats


def lifecycle(settings: LifecycleSettings, *, batched: bool = False) -> Lifecycle:
    """`batched`: status events share requests (whoever runs tasks flushes them before it stops)."""
    events: EventPublisher = EventBridgePublisher(settings.event_bus_name)
    if batched:
        from mistersmith.event_batching import BatchingPublisher

        events = BatchingPublisher(events)
    return Lifecycle(
        DynamoTaskStore(settings.task_table_name),
        events,
        retention_days=settings.task_retention_days,
    )


def intake(settings: IntakeSettings) -> Intake:
    from mistersmith.intake import Intake

    return Intake(lifecycle(settings), S3BlobStore(settings.artifacts_bucket_name), settings)


def router(settings: RouterSettings) -> Router:
    from mistersmith.adapters.sqs import SqsWorkQueue
    from mistersmith.routing import Router

    return Router(
        lifecycle(settings),
        SqsWorkQueue(settings.work_queue_url),
        SqsWorkQueue(settings.analyze_queue_url),
        analyze_lambda_limit_bytes=settings.analyze_lambda_limit_bytes,
        region=settings.aws_region,
    )


def reconciler(settings: ReconcilerSettings) -> Reconciler:
    from mistersmith.reconciling import Reconciler

    routes = router(settings)
    return Reconciler(
        routes.lifecycle,
        routes,
        lease_grace_seconds=settings.lease_seconds,
        unrouted_after_seconds=settings.unrouted_after_seconds,
        max_recoveries=settings.max_recoveries,
    )


def processor(settings: TaskRunnerSettings) -> TaskProcessor:
    from mistersmith.processing import TaskProcessor

    return TaskProcessor(
        lifecycle(settings, batched=True),
        S3BlobStore(settings.artifacts_bucket_name),
        worker_id=settings.worker_id,
        lease_seconds=settings.lease_seconds,
        max_retry_delay_seconds=settings.max_retry_delay_seconds,
        limits=settings.limits,
    )


def autoscaler(settings: AutoscalerSettings) -> Autoscaler:
    from mistersmith.adapters.ecs import EcsWorkerService
    from mistersmith.adapters.scaling_state import DynamoScalingState, DynamoTaskTimes
    from mistersmith.adapters.sqs import SqsWorkQueue
    from mistersmith.autoscaler import Autoscaler

    return Autoscaler(
        SqsWorkQueue(settings.work_queue_url),
        EcsWorkerService(settings.cluster_name, settings.worker_service_name),
        settings.policy,
        DynamoScalingState(settings.task_table_name, settings.worker_service_name),
        DynamoTaskTimes(settings.task_table_name),
    )


def stats(settings: StatsSettings) -> Stats:
    from mistersmith.adapters.ecs import EcsServiceGauge
    from mistersmith.adapters.scaling_state import DynamoScalingHistory
    from mistersmith.adapters.sqs import SqsQueueGauge
    from mistersmith.stats import Stats

    # Each queue named in the settings (the permission scan reads these constructions).
    queues: dict[str, SqsQueueGauge] = {}
    dead_letter_queues: dict[str, SqsQueueGauge] = {}
    if settings.work_queue_url:
        queues["work"] = SqsQueueGauge(settings.work_queue_url)
    if settings.analyze_queue_url:
        queues["analyze"] = SqsQueueGauge(settings.analyze_queue_url)
    if settings.work_dlq_url:
        dead_letter_queues["work"] = SqsQueueGauge(settings.work_dlq_url)
    if settings.analyze_dlq_url:
        dead_letter_queues["analyze"] = SqsQueueGauge(settings.analyze_dlq_url)
    if settings.router_dlq_url:
        dead_letter_queues["router"] = SqsQueueGauge(settings.router_dlq_url)
    service = (
        EcsServiceGauge(settings.cluster_name, settings.worker_service_name)
        if settings.cluster_name and settings.worker_service_name
        else None
    )
    history = (
        DynamoScalingHistory(settings.task_table_name, settings.worker_service_name)
        if settings.worker_service_name
        else None
    )
    return Stats(
        DynamoTaskStore(settings.task_table_name),
        queues,
        dead_letter_queues,
        service,
        history,
        cache_seconds=settings.stats_cache_seconds,
    )

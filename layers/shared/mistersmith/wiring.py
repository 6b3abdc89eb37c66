"""Builds the logic objects on their AWS adapters from a process's settings."""

from __future__ import annotations

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.adapters.ecs import EcsWorkerService
from mistersmith.adapters.eventbridge import EventBridgePublisher
from mistersmith.adapters.s3 import S3BlobStore
from mistersmith.adapters.scaling_state import DynamoScalingHistory, DynamoScalingState, DynamoTaskTimes
from mistersmith.adapters.sqs import SqsWorkQueue
from mistersmith.autoscaler import Autoscaler
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.processing import TaskProcessor
from mistersmith.routing import Router
from mistersmith.settings import (
    AutoscalerSettings,
    IntakeSettings,
    LifecycleSettings,
    RouterSettings,
    StatsSettings,
    TaskRunnerSettings,
)
from mistersmith.stats import Stats
from mistersmith.work import WorkLimits


def lifecycle(settings: LifecycleSettings) -> Lifecycle:
    return Lifecycle(DynamoTaskStore(settings.task_table_name), EventBridgePublisher(settings.event_bus_name))


def intake(settings: IntakeSettings) -> Intake:
    return Intake(lifecycle(settings), S3BlobStore(settings.artifacts_bucket_name), settings)


def router(settings: RouterSettings) -> Router:
    return Router(
        lifecycle(settings),
        SqsWorkQueue(settings.work_queue_url),
        SqsWorkQueue(settings.analyze_queue_url),
        analyze_lambda_limit_bytes=settings.analyze_lambda_limit_bytes,
    )


def processor(settings: TaskRunnerSettings) -> TaskProcessor:
    return TaskProcessor(
        lifecycle(settings),
        S3BlobStore(settings.artifacts_bucket_name),
        worker_id=settings.worker_id,
        lease_seconds=settings.lease_seconds,
        limits=WorkLimits(
            execute_timeout_seconds=settings.execute_timeout_seconds,
            output_limit_bytes=settings.output_limit_bytes,
            inline_output_bytes=settings.inline_output_bytes,
            source_archive_bytes=settings.source_archive_limit_bytes,
            source_unpacked_bytes=settings.source_unpacked_limit_bytes,
            confinement=settings.confinement,
        ),
    )


def autoscaler(settings: AutoscalerSettings) -> Autoscaler:
    return Autoscaler(
        SqsWorkQueue(settings.work_queue_url),
        EcsWorkerService(settings.cluster_name, settings.worker_service_name),
        settings.policy,
        DynamoScalingState(settings.task_table_name, settings.worker_service_name),
        DynamoTaskTimes(settings.task_table_name),
    )


def stats(settings: StatsSettings) -> Stats:
    def queues(**urls: str | None) -> dict[str, SqsWorkQueue]:
        return {name: SqsWorkQueue(url) for name, url in urls.items() if url}

    service = settings.worker_service_name
    return Stats(
        DynamoTaskStore(settings.task_table_name),
        queues(work=settings.work_queue_url, analyze=settings.analyze_queue_url),
        queues(work=settings.work_dlq_url, analyze=settings.analyze_dlq_url, router=settings.router_dlq_url),
        EcsWorkerService(settings.cluster_name, service) if settings.cluster_name and service else None,
        DynamoScalingHistory(settings.task_table_name, service) if service else None,
        cache_seconds=settings.stats_cache_seconds,
    )

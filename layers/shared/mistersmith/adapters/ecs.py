"""The worker service on ECS."""

from __future__ import annotations

from typing import Any

from mistersmith.adapters.aws import client
from mistersmith.ports import ServiceCounts, WorkerService


class EcsWorkerService(WorkerService):
    """Implements `ports.WorkerService` for one service in one cluster."""

    def __init__(self, cluster: str, service: str) -> None:
        self.cluster = cluster
        self.service = service
        self._ecs = client("ecs")

    def counts(self) -> ServiceCounts:
        return _counts(
            self._ecs.describe_services(cluster=self.cluster, services=[self.service]), self.cluster
        )

    def set_desired(self, count: int) -> None:
        self._ecs.update_service(cluster=self.cluster, service=self.service, desiredCount=count)


class EcsServiceGauge:
    """One service's task counts and nothing more (GET /stats): its role needs only DescribeServices."""

    def __init__(self, cluster: str, service: str) -> None:
        self.cluster = cluster
        self.service = service
        self._ecs = client("ecs")

    def service_counts(self) -> ServiceCounts:
        return _counts(
            self._ecs.describe_services(cluster=self.cluster, services=[self.service]), self.cluster
        )


def _counts(response: dict[str, Any], cluster: str) -> ServiceCounts:
    if not response.get("services"):
        raise LookupError(f"the service was not found in cluster {cluster!r}")
    service = response["services"][0]
    deployments = service.get("deployments", [])
    return ServiceCounts(
        desired=service["desiredCount"],
        running=service["runningCount"],
        pending=service.get("pendingCount", 0),
        # A rolling deployment shows the new PRIMARY beside the old ACTIVE until it completes.
        deployment_in_progress=len(deployments) > 1,
    )

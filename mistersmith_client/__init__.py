"""A client and CLI for the MisterSmith API: local stack (no auth) or API Gateway (SigV4 or API key)."""

from mistersmith_client.client import MisterSmithClient
from mistersmith_client.models import Task, TaskPage, UploadTicket
from mistersmith_client.settings import ClientSettings

__all__ = ["ClientSettings", "MisterSmithClient", "Task", "TaskPage", "UploadTicket"]

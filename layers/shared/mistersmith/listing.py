"""GET /tasks: pages over the by-status index (or, for one owner, the by-owner index), with a page
token that says where to go on."""

from __future__ import annotations

import base64
import binascii
import json

from mistersmith.errors import InvalidRequest
from mistersmith.models import TaskPage, TaskRecord, TaskStatus
from mistersmith.ports import TaskStore

# GET /tasks without a status walks the by-status index in this order (work in progress first).
LISTING_ORDER = (
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.DEAD_LETTERED,
)
# A selective task_type filter can leave index pages empty: stop after this many reads and hand
# the client a token, so that one request stays short.
MAX_READS_PER_PAGE = 10


def list_tasks(
    store: TaskStore,
    *,
    status: TaskStatus | None,
    task_type: str | None,
    limit: int,
    next_token: str | None,
    owner: str | None = None,
) -> TaskPage:
    """Newest first within each status. Without a status it walks the statuses in LISTING_ORDER
    on the by-status index, never scanning the table; pages are filled across statuses. One
    owner's tasks come newest first from the by-owner index, whatever their status."""
    statuses = (status,) if status or owner else LISTING_ORDER
    position, inner = _decode_position(next_token, len(statuses))
    items: list[TaskRecord] = []
    for _ in range(MAX_READS_PER_PAGE):
        if position >= len(statuses) or len(items) >= limit:
            break
        tasks, inner = store.list(
            status=statuses[position],
            task_type=task_type,
            limit=limit - len(items),
            next_token=inner,
            owner=owner,
        )
        items += [task.public() for task in tasks]
        if inner is None:
            position += 1
    token = _encode_position(position, inner) if position < len(statuses) else None
    return TaskPage(items=items, next_token=token)


def _encode_position(position: int, inner: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([position, inner]).encode()).decode()


def _decode_position(token: str | None, statuses: int) -> tuple[int, str | None]:
    """(index into the statuses walked, the store's own token there) from a token list_tasks() issued."""
    if not token:
        return 0, None
    try:
        position, inner = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error) as error:
        raise InvalidRequest("next_token is not a token this API issued") from error
    if not (
        isinstance(position, int) and 0 <= position < statuses and (inner is None or isinstance(inner, str))
    ):
        raise InvalidRequest("next_token is not a token this API issued")
    return position, inner

"""moto's server on loopback, with two corrections:

- DynamoDB requests run one at a time. DynamoDB applies a conditional write atomically; moto's
  threaded server does not (two racing `UpdateItem ... ConditionExpression` calls can both
  succeed). Leases and terminal states rest on that atomicity, so the local AWS serialises
  DynamoDB (and DynamoDB Streams) calls. Other services keep their threads, so SQS long polls
  still wait side by side.
- A stream's shard iterator is forgotten once GetRecords has used it. AWS expires iterators after
  15 minutes; moto keeps every one, and the stream mapping's four reads a second would keep
  about 25 MB an hour of them."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.dynamodbstreams.models import dynamodbstreams_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server


class _SerialDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB"):
            return self.app(environ, start_response)
        iterator = None
        if target.endswith(".GetRecords"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            iterator = json.loads(body or b"{}").get("ShardIterator")
        with self.lock:
            answer = list(self.app(environ, start_response))
            if isinstance(iterator, str):
                _forget(iterator)
            return answer


def _forget(iterator: str) -> None:
    """Drops a used shard iterator (its ARN begins with its table's: arn:aws:dynamodb:REGION:ACCOUNT:...)."""
    parts = iterator.split(":", 5)
    if len(parts) == 6:
        dynamodbstreams_backends[parts[4]][parts[3]].shard_iterators.pop(iterator, None)


class _UnimplementedInOneLine(logging.Filter):
    """An action moto lacks (the client falls back, as `dlq redrive` does) is one line, not Flask's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        # werkzeug renders the traceback into the message itself; its last line names the error.
        last = str(record.msg).rstrip().rpartition("\n")[2]
        if isinstance(error, NotImplementedError) or last.startswith("NotImplementedError:"):
            text = str(error) if error else last.removeprefix("NotImplementedError:").strip()
            record.msg, record.args, record.exc_info, record.exc_text = f"moto: {text}", (), None, None
        return True


# Where a failed request's traceback goes: Flask's logger of moto's apps ("moto") and werkzeug's.
for _name in ("moto", "werkzeug"):
    logging.getLogger(_name).addFilter(_UnimplementedInOneLine())


class MotoServer:
    def __init__(self, host: str, port: int) -> None:
        app = _SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

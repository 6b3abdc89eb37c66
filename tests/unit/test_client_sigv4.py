"""The client's SigV4 signature, checked the way API Gateway checks it: the signature recomputed with
botocore's signer from what arrived on the wire, with known credentials."""

from __future__ import annotations

import hmac
import json
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from mistersmith_client.auth import SigV4
from mistersmith_client.client import MisterSmithClient

pytestmark = pytest.mark.unit

# AWS's documented example credentials.
CREDENTIALS = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
SESSION = ReadOnlyCredentials(
    "ASIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"
)
REGION = "eu-west-1"
API = f"https://abc123defg.execute-api.{REGION}.amazonaws.com/dev"
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), "
    r"SignedHeaders=(?P<headers>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def verify(request: httpx.Request, credentials: ReadOnlyCredentials, region: str = REGION) -> bool:
    """What API Gateway does: rebuild the canonical request from the received method, URL, signed
    headers and body, sign it with the caller's secret for the date it claims, compare."""
    match = AUTHORIZATION.match(request.headers["authorization"])
    assert match, request.headers["authorization"]
    amz_date = request.headers["x-amz-date"]
    if (
        match["key"] != credentials.access_key
        or match["scope"] != f"{amz_date[:8]}/{region}/execute-api/aws4_request"
    ):
        return False
    # The server decodes what it received and encodes it again the AWS way (RFC 3986, unreserved
    # characters bare), so an encoding the client chose differently would fail here.
    path = quote(unquote(request.url.raw_path.decode().split("?")[0]), safe="/~")
    query = urlencode(
        sorted(parse_qsl(request.url.query.decode(), keep_blank_values=True)), quote_via=quote, safe="-_.~"
    )
    received = AWSRequest(
        method=request.method,
        url=f"{request.url.scheme}://{request.url.netloc.decode()}{path}" + (f"?{query}" if query else ""),
        data=request.content,
        headers={name: request.headers[name] for name in match["headers"].split(";")},
    )
    received.context["timestamp"] = amz_date
    signer = SigV4Auth(credentials, "execute-api", region)
    expected = signer.signature(signer.string_to_sign(received, signer.canonical_request(received)), received)
    return hmac.compare_digest(expected, match["signature"])


def signed_requests(credentials: ReadOnlyCredentials, call) -> list[httpx.Request]:
    """The requests the client sends for `call(client)`, as they leave it."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        body = {
            "id": "ns:task-1",
            "task_type": "execute",
            "status": "QUEUED",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
        return httpx.Response(
            200,
            json={"items": [], "next_token": None}
            if request.url.path.endswith("/tasks") and request.method == "GET"
            else body,
        )

    client = MisterSmithClient(
        API, auth=SigV4(lambda: credentials, REGION), transport=httpx.MockTransport(answer)
    )
    call(client)
    return sent


def test_sigv4_post_with_body_carries_a_signature_botocore_verifies():
    # Given a client signing with known credentials
    # When it submits a task
    (request,) = signed_requests(
        CREDENTIALS, lambda api: api.submit("execute", {"command": ["true"]}, task_id="t-1")
    )
    # Then the request names the key, region and service, signs host, content type and date, and verifies
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "SignedHeaders=content-type;host;x-amz-date," in request.headers["authorization"]
    assert verify(request, CREDENTIALS)


def test_sigv4_get_with_query_and_encoded_path_verifies():
    # Given a listing whose token needs encoding, and a read of an id with a colon
    tokens = "eyJpZCI6ICJ4In0=/+"

    def calls(api: MisterSmithClient) -> None:
        api.list(status="SUCCEEDED", limit=5, next_token=tokens)
        api.get("ns:task-1")

    # When they are sent / Then both verify as received
    listing, read = signed_requests(CREDENTIALS, calls)
    assert listing.url.params["next_token"] == tokens
    assert read.url.raw_path == b"/dev/tasks/ns%3Atask-1"
    assert verify(listing, CREDENTIALS) and verify(read, CREDENTIALS)


def test_sigv4_temporary_credentials_send_and_sign_the_session_token():
    (request,) = signed_requests(SESSION, lambda api: api.get("t-1"))
    assert request.headers["x-amz-security-token"] == "session-token-example"
    assert "x-amz-security-token" in request.headers["authorization"]
    assert verify(request, SESSION)


def test_sigv4_body_changed_after_signing_fails_verification():
    # Given a signed submission
    (request,) = signed_requests(
        CREDENTIALS, lambda api: api.submit("execute", {"command": ["true"]}, task_id="t-1")
    )
    # When its body is altered on the way
    tampered = httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        content=json.dumps(
            {"id": "t-1", "task_type": "execute", "payload": {"command": ["rm", "-rf", "/"]}}
        ).encode(),
    )
    # Then the signature no longer verifies
    assert not verify(tampered, CREDENTIALS)


def test_sigv4_other_secret_fails_verification():
    (request,) = signed_requests(CREDENTIALS, lambda api: api.get("t-1"))
    assert not verify(request, ReadOnlyCredentials("AKIDEXAMPLE", "another-secret", None))


def test_sigv4_credentials_are_fetched_per_request():
    # Given a credentials provider that rotates
    rotation = iter([CREDENTIALS, SESSION])
    sent: list[httpx.Request] = []
    client = MisterSmithClient(
        API,
        auth=SigV4(lambda: next(rotation), REGION),
        transport=httpx.MockTransport(
            lambda request: sent.append(request) or httpx.Response(200, json={"status": "ok"})
        ),
    )
    # When two requests are made / Then each is signed with the credentials current at the time
    client.health()
    client.health()
    assert verify(sent[0], CREDENTIALS) and verify(sent[1], SESSION)

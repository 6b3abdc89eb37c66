"""How requests authenticate: SigV4 for API Gateway's IAM auth, an API key, or nothing locally."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Generator
from urllib.parse import urlsplit

import httpx
from botocore.auth import SigV4Auth as _BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from mistersmith_client.errors import ConfigurationError
from mistersmith_client.settings import ClientSettings

SERVICE = "execute-api"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# Signed besides host and the x-amz-* headers botocore adds: what API Gateway receives unchanged.
_SIGNED_HEADERS = ("content-type",)

CredentialsProvider = Callable[[], ReadOnlyCredentials]


class SigV4(httpx.Auth):
    """Signs each request (method, path, query, host, content type, body) with botocore's SigV4 signer
    for `execute-api`. Credentials are asked for per request, so refreshed ones are used."""

    requires_request_body = True

    def __init__(self, credentials: CredentialsProvider, region: str, service: str = SERVICE) -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = {"host": request.headers["host"]}
        headers |= {name: request.headers[name] for name in _SIGNED_HEADERS if name in request.headers}
        signed = AWSRequest(
            method=request.method, url=str(request.url), data=request.content, headers=headers
        )
        _BotocoreSigV4(self._credentials(), self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request


class ApiKey(httpx.Auth):
    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-key"] = self._key
        yield request


def is_local(url: str) -> bool:
    """True for plain http or a loopback host: the local stack, which has no auth."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_of(url: str) -> str | None:
    match = _EXECUTE_API_HOST.match(urlsplit(url).hostname or "")
    return match["region"] if match else None


def auth_for(
    settings: ClientSettings, api_url: str, credentials: Callable[[str | None], CredentialsProvider]
) -> httpx.Auth | None:
    """The auth that `settings.auth` asks for (or that `auto` picks for this URL)."""
    mode = settings.auth
    if mode == "auto":
        mode = "api-key" if settings.api_key else "none" if is_local(api_url) else "iam"
    if mode == "none":
        return None
    if mode == "api-key":
        if settings.api_key is None:
            raise ConfigurationError(
                "--auth api-key needs a key: set MISTERSMITH_API_KEY (or pass --api-key)"
            )
        return ApiKey(settings.api_key.get_secret_value())
    region = settings.region or region_of(api_url)
    if not region:
        raise ConfigurationError(
            f"cannot tell which region to sign for {api_url}: pass --region or set AWS_REGION"
        )
    return SigV4(credentials(settings.profile), region)

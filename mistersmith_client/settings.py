"""The client's configuration: flags over environment variables, read in this one place."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

AuthMode = Literal["auto", "iam", "api-key", "none"]


class ClientSettings(BaseSettings):
    """`MISTERSMITH_*` variables (the local stack writes MISTERSMITH_API_URL to .local/env); keyword
    arguments (the CLI's flags) win over them."""

    model_config = SettingsConfigDict(
        env_prefix="MISTERSMITH_", extra="ignore", frozen=True, populate_by_name=True
    )

    api_url: str | None = None
    # A CloudFormation stack whose outputs give ApiUrl and the queue URLs.
    stack_name: str | None = None
    # auto: an API key if one is set, no auth for http:// or loopback, SigV4 otherwise.
    auth: AuthMode = "auto"
    api_key: SecretStr | None = None
    region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MISTERSMITH_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    profile: str | None = Field(
        default=None, validation_alias=AliasChoices("MISTERSMITH_PROFILE", "AWS_PROFILE")
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30
    # Retries of connection errors, 429 and 502-504 (submissions are safe to retry: they carry an id).
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    # Dead-letter queues, when no stack name is given; otherwise derived from the source queues'
    # redrive policies (WORK_QUEUE_URL and ANALYZE_QUEUE_URL, as .local/env has them).
    work_dlq_url: str | None = None
    analyze_dlq_url: str | None = None
    router_dlq_url: str | None = None
    work_queue_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MISTERSMITH_WORK_QUEUE_URL", "WORK_QUEUE_URL"),
    )
    analyze_queue_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "analyze_queue_url", "MISTERSMITH_ANALYZE_QUEUE_URL", "ANALYZE_QUEUE_URL"
        ),
    )

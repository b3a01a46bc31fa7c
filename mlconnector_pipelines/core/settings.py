"""The building blocks of every connector.yaml section: strict models, secret references, windows.

Each system's section model lives in its own folder (`systems/<system>/config.py`) and is built
from these; `config.py` only assembles the sections the registry declares.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError


class Strict(BaseModel):
    """A settings model: unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def time_zone(value: str) -> str:
    """An IANA time zone name (Europe/Berlin, UTC)."""
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin or UTC)") from None
    return value


def https_url(value: str) -> str:
    """An API root: https only (credentials travel over it), without a trailing slash."""
    if not value.startswith("https://"):
        raise ValueError("must be an https:// URL")
    return value.rstrip("/")


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOW_TO_GIVE_A_SECRET = (
    "give {env: VARIABLE} (an environment variable holding it) or {credential: NAME} (stored with "
    "`mlconnector credentials set NAME`)"
)


class SecretRef(Strict):
    """Where a secret comes from: an environment variable or the encrypted credential store.

    Only this reference lives in connector.yaml, never the value.
    """

    env: str | None = Field(None, description="Environment variable holding the secret.")
    credential: str | None = Field(None, description="Name in the credential store (`mlconnector credentials`).")
    sandbox_default: str | None = Field(
        None, description="The sandbox's public demo value, used only by the sandbox profile while `env` is unset."
    )

    @model_validator(mode="before")
    @classmethod
    def _not_the_secret_itself(cls, value: Any) -> Any:
        if isinstance(value, str):  # its value written where its reference goes: said how, never echoed
            raise ValueError(f"a secret is not written in connector.yaml: {_HOW_TO_GIVE_A_SECRET}")
        return value

    @field_validator("env")
    @classmethod
    def _a_variable_name(cls, value: str | None) -> str | None:
        # A secret written where its variable's name goes would be shown wherever the name is (ping, run metadata):
        # refused without echoing it.
        if value is not None and not _VARIABLE_NAME.fullmatch(value):
            raise ValueError(
                "is not an environment variable's name (letters, digits and _, not starting with a digit); if it is "
                f"the secret itself, it is not written in connector.yaml: {_HOW_TO_GIVE_A_SECRET}"
            )
        return value

    def sandbox_value(self) -> str | None:
        """The sandbox's public demo secret, used only while the environment variable is unset."""
        if self.env and self.sandbox_default and not os.environ.get(self.env):
            return self.sandbox_default
        return None

    def resolve(self, data_dir: Path, what: str = "the secret") -> str:
        """The secret's value, when it is needed (a run, a request), never at load time."""
        if self.credential:
            from .credentials import CredentialStore

            return CredentialStore(data_dir).get(self.credential)
        value = os.environ.get(self.env or "") or self.sandbox_value()
        if not value:
            raise ConfigError(f"{what}: environment variable {self.env} is not set")
        return value

    def missing_env(self) -> str | None:
        """The environment variable this secret needs but that is not set (no sandbox default either)."""
        if self.env and not os.environ.get(self.env) and not self.sandbox_default:
            return self.env
        return None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretRef:
        if (self.env is None) == (self.credential is None):
            raise ValueError("give exactly one of `env` (an environment variable) or `credential` (a stored name)")
        return self


class PartitionConfig(Strict):
    cadence: Literal["hourly", "daily", "weekly", "monthly"] = Field("daily", description="Window length.")
    start: date = Field(description="First window to offer in the UI (earliest lastModifiedDateTime to load).")
    settle_lag_minutes: int = Field(
        30,
        ge=0,
        le=24 * 60,
        description="A closed window is loaded by the schedule this long after it ends, for late commits.",
    )
    timezone: str = Field(
        "UTC",
        description=(
            "Where windows are cut: UTC days by default, or e.g. a server's own days (SAP B1 stamps in server time)."
        ),
    )

    reconcile_deletions_cron: str = Field(
        "15 4 * * *",
        description=(
            "When the schedule compares each company's keys with the source's and ends the records deleted there "
            "(cron, in `timezone`). Sources without a delete feed need it; for Business Central with change "
            "notifications it is the safety net for a lapsed subscription."
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return time_zone(value)

    @field_validator("reconcile_deletions_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        # Dagster's own test: the schedule would refuse the string anyway, later and without naming the setting.
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(value):
            raise ValueError(f"{value!r} is not a cron schedule (five fields, e.g. '15 4 * * *')")
        return value

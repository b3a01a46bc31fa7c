"""What every system's Dagster resource is: its validated connector.yaml section, nothing more.

Each setting is declared once, in the section's pydantic model (`systems/<system>/config.py`).
The resource carries that section as JSON (Dagster config cannot hold an arbitrary model, nor
nulls inside a map), validates it again on use, and hands the model to the system's client.
Secrets stay references; their values are read when a step needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import BaseModel, Field

from ..core.settings import SecretRef


class SystemResource(dg.ConfigurableResource):
    settings: str = Field(description="The system's connector.yaml section as JSON, validated by its model.")
    data_dir: str = Field(description="The data folder: the credential store lives here.")

    config_model: ClassVar[type[BaseModel]]

    @classmethod
    def from_section(cls, section: BaseModel, data_dir: Path):
        if not isinstance(section, cls.config_model):
            raise TypeError(f"{cls.__name__} takes a {cls.config_model.__name__}, not {type(section).__name__}")
        return cls(settings=section.model_dump_json(by_alias=True), data_dir=str(data_dir))

    @property
    def section(self) -> Any:  # an instance of config_model
        return self.config_model.model_validate_json(self.settings)

    def secret(self, ref: SecretRef, what: str) -> str:
        """A secret's value, read now (from the environment or the credential store)."""
        return ref.resolve(Path(self.data_dir), what)

"""The registry of this build: every config ``type`` it implements, and the config model from it.

:class:`Registry` joins the connector types (:mod:`tillbridge.connectors.registry`) and the ERP
types (:mod:`tillbridge.erp.registry`) and builds the merchant config model from them: each
pluggable section is a discriminated union on ``type`` of the registered models, so an entry is
validated by its own type's model, and a type this build does not know is reported with its line
in the file and the list of known types, never ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from tillbridge.config import (
    CONNECTOR_SECTIONS,
    PLUGIN_SECTIONS,
    ConfigProblem,
    MerchantConfig,
    Name,
    PluginConfig,
    check_config,
    load_config,
)
from tillbridge.connectors.gateways.fake import FakeConnectorConfig
from tillbridge.connectors.registry import CONNECTOR_TYPES
from tillbridge.connectors.types import ConnectorType
from tillbridge.erp.parts import ErpType
from tillbridge.erp.registry import ERP_TYPES
from tillbridge.errors import ConfigError


class Registry:
    """The types one build knows (see the module docstring)."""

    def __init__(
        self,
        connector_types: Iterable[ConnectorType] = CONNECTOR_TYPES,
        erp_types: Iterable[ErpType] = ERP_TYPES,
    ) -> None:
        self.connector_types: dict[str, dict[str, ConnectorType]] = {
            s: {} for s in CONNECTOR_SECTIONS
        }
        for t in connector_types:
            if t.name in self.connector_types[t.section]:
                raise ConfigError(f"two registry entries for {t.section} type {t.name!r}")
            self.connector_types[t.section][t.name] = t
        self.erp_types: dict[str, ErpType] = {}
        for e in erp_types:
            if e.name in self.erp_types:
                raise ConfigError(f"two registry entries for erp type {e.name!r}")
            self.erp_types[e.name] = e

    def models(self, section: str) -> dict[str, type[PluginConfig]]:
        """``type`` -> model of one pluggable section."""
        if section == "erp":
            return {t: e.model for t, e in self.erp_types.items()}
        return {t: c.model for t, c in self.connector_types[section].items()}

    def known(self, section: str) -> list[str]:
        return sorted(self.models(section))

    @functools.cached_property
    def config_model(self) -> type[MerchantConfig]:
        """:class:`MerchantConfig` with each pluggable section a discriminated union on
        ``type`` of this registry's models."""
        fields: dict[str, Any] = {}
        for section in PLUGIN_SECTIONS:
            models = tuple(self.models(section).values())
            entry: Any = (
                Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
                if models
                else _no_types(section)
            )
            fields[section] = (dict[Name, entry], Field(default_factory=dict))
        model: type[MerchantConfig] = create_model(
            "MerchantConfig", __base__=MerchantConfig, **fields
        )
        return model

    def check_config(
        self, path: Path, *, secrets: bool = True
    ) -> tuple[MerchantConfig | None, list[ConfigProblem]]:
        """Validate the file at ``path`` with this registry's model (see
        :func:`tillbridge.config.check_config`)."""
        return check_config(path, self.config_model, secrets=secrets)

    def load_config(self, path: Path, *, required: bool = False) -> MerchantConfig:
        """The merchant config at ``path``, validated, its secrets left unresolved.

        Without a file the bridge runs on :meth:`default_config`, but only when ``required`` is
        false (the default path): a file the operator named on purpose (``TILLBRIDGE_CONFIG``)
        must exist, or a typo in its path would start a sandbox-only bridge.

        Secrets are not resolved here on purpose: a secret that cannot be read stops only the
        part that needs it (a terminal refuses payments with the reason, a webhook account
        answers 503), not the whole bridge; :meth:`MerchantConfig.secret_problems` lists them
        for start-up, and ``tillbridge config check`` fails on them.
        """
        if not path.exists():
            if required:
                raise ConfigError(
                    f"the configuration file {path} does not exist (TILLBRIDGE_CONFIG names it): "
                    "create it (start from tillbridge.example.toml), fix the path, or unset "
                    "TILLBRIDGE_CONFIG to run on the built-in sandbox connector 'fake' only",
                    path=str(path),
                )
            return self.default_config()
        return load_config(path, self.config_model, secrets=False)

    def default_config(self) -> MerchantConfig:
        """What the bridge runs on without a configuration file: the ``fake`` sandbox."""
        return MerchantConfig(connectors={"fake": FakeConnectorConfig()})

    def connector_type(self, section: str, entry: PluginConfig, name: str) -> ConnectorType:
        """The registry entry that builds ``[section.name]``; a clear error if there is none."""
        found = self.connector_types[section].get(entry.type)
        if found is None:
            known = ", ".join(self.known(section)) or "none"
            raise ConfigError(
                f"{section}.{name}: type {entry.type!r} is not available in this build "
                f"(known {section} types: {known})"
            )
        if not isinstance(entry, found.model):
            raise ConfigError(f"{section}.{name}: not a valid {found.name} entry")
        return found

    def erp_type(self, entry: PluginConfig, name: str) -> ErpType:
        found = self.erp_types.get(entry.type)
        if found is None:
            known = ", ".join(self.known("erp")) or "none"
            raise ConfigError(
                f"erp.{name}: type {entry.type!r} is not available in this build "
                f"(known erp types: {known})"
            )
        return found

    def erp_entries(self, config: MerchantConfig) -> dict[str, dict[str, PluginConfig]]:
        """The configured ERP entries grouped by type (every type checked)."""
        grouped: dict[str, dict[str, PluginConfig]] = {}
        for name, entry in config.erp.items():
            grouped.setdefault(self.erp_type(entry, name).name, {})[name] = entry
        return grouped


class _NoTypes(PluginConfig):
    """The entry model of a section this build has no types for: every entry is refused the
    way an unknown type is."""

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        tag = data.get("type") if isinstance(data, dict) else None
        raise PydanticCustomError(
            "union_tag_invalid", "type {tag!r} is not available in this build",
            {"tag": tag, "expected_tags": ""},
        )  # fmt: skip


def _no_types(section: str) -> type[PluginConfig]:
    return _NoTypes


@functools.cache
def default_registry() -> Registry:
    """Everything this build implements."""
    return Registry()

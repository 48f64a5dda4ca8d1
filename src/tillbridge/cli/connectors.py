"""``tillbridge connectors list|types``: what is configured and whether it works; what this build
knows.

``list`` builds the runtime from the configuration file as ``serve`` does (no counterpart is
contacted: factories never talk to one) and shows every configured connector, that is every
name of ``[connectors.*]``, ``[terminals.*]`` and ``[providers.*]``, in file order, with its
section, type, family, the capabilities that are on and its health: ``ok``, or the connector's
``problem`` (why payments on it are refused, e.g. a password that does not resolve). Card
terminals also show their contact state as the bridge last persisted it (``online``, last
contact, last error); the terminal itself is not asked, because that needs its lease and a
status command must not wait behind a customer's payment. ERP entries (``[erp.*]``) follow, with
their type and health (``ok``, or the first of their secrets that does not resolve).

``types`` lists the types this build implements, per section, with their summary.

Both print a table, or a JSON list with ``--json`` (one object per entry, every object with the
same keys). A configuration the bridge cannot load (an unknown type, an invalid value) is the
usual error with its positions in the file and exit code 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from tillbridge.cli.common import err, handle_errors, out, settings, table_console, with_runtime
from tillbridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
    from tillbridge.app.runtime import Runtime
    from tillbridge.config import MerchantConfig
    from tillbridge.payments.contract import Capabilities

connectors_app = typer.Typer(
    help="Connectors: what is configured, its capabilities and health; the known types.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def load_config_for_listing(path: Path) -> MerchantConfig:
    """The merchant config at ``path`` as ``serve`` loads it: validated, its secrets left
    unresolved (the built-in default when the default path has no file; a file named on purpose
    must exist).

    A listing shows *which* entry lacks a secret: the factories turn an unresolvable secret
    into the connector's ``problem``. Every other problem is the usual error with positions in
    the file.
    """
    from tillbridge.app.registry import default_registry
    from tillbridge.settings import DEFAULT_CONFIG_PATH

    return default_registry().load_config(path, required=path != DEFAULT_CONFIG_PATH)


@dataclass
class Listed:
    """One configured entry as ``connectors list`` shows it (``capabilities`` None: an ERP)."""

    name: str
    section: str
    type: str
    family: str | None
    capabilities: Capabilities | None
    health: str
    link: str | None
    #: The persisted contact state of a card terminal (None: never reached, or not read).
    online: bool | None = None
    last_contact_at: str | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object: the same keys for every entry, capabilities as a dict."""
        out = asdict(self)
        out["capabilities"] = {} if self.capabilities is None else self.capabilities.as_dict()
        return out


async def inventory(rt: Runtime) -> tuple[list[Listed], str | None]:
    """Every configured connector and ERP entry, in file order; and why the terminals' contact
    state could not be read, if it could not."""
    from sqlalchemy.exc import SQLAlchemyError

    from tillbridge.config import CONNECTOR_SECTIONS
    from tillbridge.payments.contract import Family

    listed: list[Listed] = []
    for section in CONNECTOR_SECTIONS:
        for name, entry in getattr(rt.config, section).items():
            c = rt.connectors[name]
            link = c.describe().get("link")
            listed.append(
                Listed(
                    name,
                    section,
                    entry.type,
                    str(c.family),
                    c.capabilities,
                    health=c.problem or "ok",
                    link=None if link is None else str(link),
                )
            )
    unread = None
    try:
        # Only the persisted state (what the worker last saw): no lease, no terminal contact.
        for item in listed:
            if item.family == Family.CARD_PRESENT:
                status = await rt.terminals.status(item.name)
                item.online = status["online"]
                item.last_contact_at = status["last_contact_at"]
                item.last_error = status["last_error"]
    except (BridgeError, SQLAlchemyError) as exc:
        # The configuration is the point of the listing; an unmigrated or unreachable database
        # only costs the contact column.
        unread = _reason(exc)
    for name, entry in rt.config.erp.items():
        url = getattr(entry, "url", None)
        listed.append(
            Listed(
                name,
                "erp",
                entry.type,
                family=None,
                capabilities=None,
                health=_secret_problem(rt.config, f"erp.{name}.") or "ok",
                link=None if url is None else str(url),
            )
        )
    return listed, unread


def _secret_problem(config: MerchantConfig, prefix: str) -> str | None:
    """The first secret under ``prefix`` that does not resolve, said as ``where: why``.

    Resolving reads an environment variable or a local file; nothing is sent anywhere.
    """
    for where, ref in config.secret_refs():
        if where.startswith(prefix):
            try:
                ref.resolve()
            except ConfigError as exc:
                return f"{where.removeprefix(prefix)}: {exc.message}"
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, BridgeError):
        detail = exc.details.get("detail")
        return f"{exc.message} ({detail})" if detail else exc.message
    text = str(getattr(exc, "orig", None) or exc).splitlines()
    return text[0][:200] if text else type(exc).__name__


def _contact(item: Listed, unread: str | None) -> str:
    if item.family != "card_present":
        return ""
    if unread is not None:
        return "?"
    if item.online is None:
        return "never contacted"
    state = "online" if item.online else "offline"
    if item.last_contact_at:
        state += f", last {item.last_contact_at}"
    if item.last_error and not item.online:
        state += f": {item.last_error}"
    return state


@connectors_app.command("list")
@handle_errors
def connectors_list(as_json: JsonOpt = False) -> None:
    """Every configured connector and ERP entry: type, family, capabilities, health."""
    path = settings().config
    listed, unread = with_runtime(inventory, config=load_config_for_listing(path))
    if not path.exists():
        err.print(f"{path} not found: the built-in sandbox connector 'fake'", highlight=False)
    if unread is not None:
        err.print(f"terminal contact state not read: {unread}", highlight=False, markup=False)
    if as_json:
        print(json.dumps([item.as_dict() for item in listed], indent=2))
        return
    if not listed:
        out.print(
            "no connectors configured (add [connectors.<name>], [terminals.<name>] or "
            "[providers.<name>] to the config file)",
            markup=False,
        )
        return
    table = Table("name", "section", "type", "family", "capabilities", "health", "contact")
    for col in table.columns[:4]:
        col.no_wrap = True  # names and types stay whole; the long columns wrap instead
    for item in listed:
        caps = ", ".join(item.capabilities.names()) if item.capabilities else ""
        _add_row(
            table, item.name, item.section, item.type, item.family or "", caps or "-",
            item.health, _contact(item, unread),
        )  # fmt: skip
    table_console().print(table)


@connectors_app.command("types")
@handle_errors
def connectors_types(as_json: JsonOpt = False) -> None:
    """The connector and ERP types this build knows, per section, with what each is."""
    from tillbridge.app.registry import default_registry
    from tillbridge.config import CONNECTOR_SECTIONS

    registry = default_registry()
    by_section: dict[str, list[dict[str, Any]]] = {
        section: [
            {"section": section, "type": t.name, "family": str(t.family), "summary": t.summary}
            for t in sorted(registry.connector_types[section].values(), key=lambda t: t.name)
        ]
        for section in CONNECTOR_SECTIONS
    }
    by_section["erp"] = [
        {"section": "erp", "type": e.name, "family": None, "summary": e.summary}
        for e in sorted(registry.erp_types.values(), key=lambda e: e.name)
    ]
    if as_json:
        print(json.dumps([r for rows in by_section.values() for r in rows], indent=2))
        return
    table = Table("section", "type", "family", "summary")
    for col in table.columns[:3]:
        col.no_wrap = True
    for section, rows in by_section.items():
        for r in rows:
            _add_row(table, section, r["type"], r["family"] or "", r["summary"])
        if not rows:
            # A section the config file may have, whose every entry this build would refuse.
            _add_row(table, section, "-", "", "no types in this build")
    table_console().print(table)


def _add_row(table: Table, *cells: str) -> None:
    # Text, not str: a cell is data (a problem may quote "[terminals.x]"), never markup.
    table.add_row(*(Text(c) for c in cells))

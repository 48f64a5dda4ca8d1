"""``tillbridge apikey create|list|revoke``: the API keys of the HTTP API.

A key's secret is printed once, by ``create``, alone on the last line of stdout (so a script can
take it with ``tail -1``); everything else goes to stderr or into tables without secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tillbridge.cli.common import err, handle_errors, out, print_json, print_table, with_runtime

if TYPE_CHECKING:
    from tillbridge.app.runtime import Runtime

apikey_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


@apikey_app.command("create")
@handle_errors
def apikey_create(
    name: Annotated[str, typer.Option(help="who uses the key, e.g. 'odoo-pos'")],
    scope: Annotated[
        list[str], typer.Option(help="payments:read, payments:write or admin (repeatable)")
    ],
) -> None:
    """Create an API key. The key is printed once, alone on the last line of stdout."""
    from tillbridge.services import apikeys

    async def go(rt: Runtime) -> str:
        async with rt.db.write() as conn:
            _record, plaintext = await apikeys.create_key(conn, name, scope)
        return plaintext

    plaintext = with_runtime(go)
    err.print(f"created API key '{name}' with scopes {', '.join(scope)}; it is shown only once:")
    print(plaintext)  # plain print: no console markup or wrapping around the secret


@apikey_app.command("list")
@handle_errors
def apikey_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List API keys (never their secrets)."""
    from tillbridge.services import apikeys

    async def go(rt: Runtime) -> list[Any]:
        async with rt.db.read() as conn:
            return list(await apikeys.list_keys(conn))

    rows = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "scopes": sorted(k.scopes),
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in with_runtime(go)
    ]
    if as_json:
        print_json(rows)
        return
    columns = ["id", "name", "prefix", "scopes", "created_at", "revoked_at"]
    print_table(
        columns,
        ([" ".join(r["scopes"]) if c == "scopes" else r[c] for c in columns] for r in rows),
    )


@apikey_app.command("revoke")
@handle_errors
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="id or prefix of the key")]) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    from tillbridge.services import apikeys

    async def go(rt: Runtime) -> None:
        async with rt.db.write() as conn:
            await apikeys.revoke(conn, key_id)

    with_runtime(go)
    out.print(f"revoked {key_id}")

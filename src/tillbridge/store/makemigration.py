"""Developer tool: autogenerate a migration by diffing the tables against a fresh database.

``python -m tillbridge.store.makemigration "message"`` builds a throwaway SQLite database at the
current head, compares it with the table modules and writes a new revision file. Review it:
autogenerate misses renames and some type changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from tillbridge.store.migrate import _config, upgrade


def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'm.db'}"
        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)
        engine.dispose()


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "schema change")

"""Persistence: one SQLAlchemy Core schema that runs on SQLite (embedded) and PostgreSQL."""

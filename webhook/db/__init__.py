"""The database edge: the engine (SQLite or PostgreSQL, Alembic upgrades), the SQLAlchemy models and the
data store the services share.

Owns: connections, schema and migrations. May import: `core`, `config`. Nothing above.
"""

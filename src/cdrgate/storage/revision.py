"""The newest schema revision, in a module importing nothing: an import into an empty SQLite
store checks the store is at it before its first row, without SQLAlchemy or Alembic
(``ingest/first_load.py``); ``storage/schema.py`` re-exports it."""

# The newest revision in migrations/versions. A test checks it against Alembic's own answer,
# so a new migration that does not move it fails the suite.
HEAD = "0019"

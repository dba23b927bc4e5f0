"""SQLAlchemy Core storage: one module per table over the tables in ``tables.py``."""

"""Every table, defined once. Migrations in ``cdrgate/migrations`` create and evolve them.

Times of day are stored as wall-clock seconds (see ``timefmt``) and expiries as epoch
milliseconds, both as integers, so the same queries are index range scans on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only aliases rowid for INTEGER PRIMARY KEY, not BIGINT.
_row_id = BigInteger().with_variant(Integer(), "sqlite")

cdr = Table(
    "cdr",
    metadata,
    Column("id", _row_id, primary_key=True, autoincrement=True),
    Column("sn", String, nullable=False),
    Column("callid", String, nullable=False),
    Column("ts", BigInteger, nullable=False),  # timestart as wall-clock seconds
    Column("callfrom", String, nullable=False),
    Column("callto", String, nullable=False),
    Column("callduraction", Integer, nullable=False),
    Column("talkduraction", Integer, nullable=False),
    Column("srctrunkname", String, nullable=False),
    Column("dsttrunkname", String, nullable=False),
    Column("status", String, nullable=False),
    Column("type", String, nullable=False),
    Column("pincode", String, nullable=False),
    Column("recording", String, nullable=False),
    Column("didnumber", String, nullable=False),
    # The row as the download writes it, rendered once at insert time: exports then copy
    # text instead of formatting 14 columns per row (see docs/storage.md).
    Column("line", Text, nullable=False),
    # The uniqueness key: a PBX (serial number) never reuses a call id. These keys are
    # SQLite's; PostgreSQL's cdr, partitioned by month of ts, has the primary key (id, ts) and
    # one B-tree for both lines below, UNIQUE (ts, callid, sn) (migrations 0005 and 0016).
    UniqueConstraint("sn", "callid"),
    Index(None, "ts", "callid", "sn"),  # the download order
    # The extension indexes, covering: (callfrom, ts) and (callto, ts), then the columns a
    # download by extension reads, so it never visits the table (SQLite's form; PostgreSQL
    # carries them as INCLUDE columns), as migration 0017 makes them: tests/storage/
    # test_covering_indexes.py checks that a migrated store has these columns.
    Index("ix_cdr_callfrom_ts", "callfrom", "ts", "callid", "sn", "line"),
    Index("ix_cdr_callto_ts", "callto", "ts", "callid", "sn", "callfrom", "line"),
)

# PostgreSQL's sequence of cdr.id (named by migration 0005): writers that take ids ahead of
# their rows (bulk loads) and readers of the newest id ask it by this name.
CDR_ID_SEQUENCE = "cdr_id_seq"

# The CDRs that name a recording file. Its index holds only these (migration 0011: most CDRs
# name none), and the engines use a partial index only for a query that says the same
# condition, with the literal, not a parameter: every question about a recording name says it.
NAMES_A_FILE = cdr.c.recording != literal_column("''")
_RECORDING = Index(None, cdr.c.recording, sqlite_where=NAMES_A_FILE)


def with_postgresql_options() -> MetaData:
    """``metadata`` with the options that only PostgreSQL reads (the recording index's
    condition), for alembic's environment. Set here on demand, not in the definitions above:
    SQLAlchemy imports a dialect's package to check an option naming it, ~25 ms of every
    command's start-up on SQLite (bench/RESULTS.md, fourteenth round)."""
    _RECORDING.dialect_kwargs["postgresql_where"] = NAMES_A_FILE
    return metadata


# Per hour of ``ts`` x status x type: what ``/v1/stats`` needs for a long range without reading
# every CDR. Kept by every insert and delete of ``cdr`` (storage/summary.py).
cdr_summary = Table(
    "cdr_summary",
    metadata,
    Column("hour", BigInteger, primary_key=True),  # ts // 3600 * 3600, as raw stats group it
    Column("status", String, primary_key=True),
    Column("type", String, primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("talk", BigInteger, nullable=False),  # sum of talkduraction
    Column("duration", BigInteger, nullable=False),  # sum of callduraction
)

api_account = Table(
    "api_account",
    metadata,
    Column("name", String, primary_key=True),
    Column("password_hash", String, nullable=False),  # scrypt of the md5 the client sends
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # The extensions the account may read, as scope.py renders them; NULL: every extension.
    Column("extensions", String),
)

api_token = Table(
    "api_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the token, never the token
    Column("account", String, nullable=False),
    Column("client_ip", String, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False, index=True),
    # Where the application wants events pushed (login/heartbeat fields), kept as given.
    Column("event_ip", String),
    Column("event_port", String),
    Column("event_url", String),
    Column("event_urltag", String),
    Column("event_version", String),
)

# Keyed by expiry first (the random carries it: storage/randoms.py): randoms are issued in
# expiry order, so an insert appends at the key's right edge and a flow's writes land on the
# pages the flows before it wrote, which the WAL checkpoint then copies once, not per flow;
# without a rowid on SQLite, one B-tree holds the row. The purge is a range of the key.
cdr_random = Table(
    "cdr_random",
    metadata,
    Column("expires_ms", BigInteger, primary_key=True),
    Column("random_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("selector", String, nullable=False),  # normalised extid/number
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("client_ip", String, nullable=False),
    Column("allowed_ip", String),
    Column("used_ms", BigInteger),
    sqlite_with_rowid=False,
)

login_guard = Table(
    "login_guard",
    metadata,
    Column("client_ip", String, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until_ms", BigInteger, nullable=False),
    Column("last_failure_ms", BigInteger, nullable=False),
    # Whose password the counted failures tried (``login_guard.account_key``), "*" when they
    # tried several: only a good login of that one account clears the count (0019).
    Column("failed_account", String),
)

download_audit = Table(
    "download_audit",
    metadata,
    Column("id", _row_id, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False, index=True),  # epoch ms of the attempt
    Column("account", String),  # None when the token did not authenticate
    Column("client_ip", String, nullable=False),
    Column("api_version", String, nullable=False),
    # The filter as the client sent it (truncated), so refused attempts are readable too.
    Column("selector", String, nullable=False),
    Column("starttime", String, nullable=False),
    Column("endtime", String, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("outcome", String, nullable=False),  # "ok", "failed" or "aborted"
    Column("errno", String),  # the errno of a failed attempt
    # "cdr" or "recording"; a recording download keeps its file name in ``selector``.
    Column("kind", String, nullable=False, server_default="cdr"),
)

# Credentials for the NewCdr push endpoint: write-only, long-lived, one per pushing source.
ingest_key = Table(
    "ingest_key",
    metadata,
    Column("name", String, primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256, never the key
    Column("sn", String, nullable=False),  # serial given to events that carry none
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger),
)

# Where `import --follow` stopped in a file: committed with the rows it covers, so a
# restart neither loses nor repeats a line.
follow_checkpoint = Table(
    "follow_checkpoint",
    metadata,
    Column("source", String, primary_key=True),  # the followed path, as given
    Column("device", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),  # bytes consumed (whole lines only)
    Column("line", BigInteger, nullable=False),  # lines consumed, for error reports
    Column("updated_ms", BigInteger, nullable=False),
)

sync_state = Table(
    "sync_state",
    metadata,
    # Where `cdrgate sync` got to, per PBX: its base URL, checked against its serial number.
    Column("pbx_url", String, primary_key=True),
    Column("sn", String),  # learnt from the first CDR seen; None until then
    Column("since_ts", BigInteger, nullable=False),  # where the first sync started
    Column("mark_ts", BigInteger),  # newest timestart stored from completed windows
    # Where the far end's change feed was read to (a cdrgate far end only; None otherwise).
    Column("feed_seq", BigInteger),
    Column("last_sync_ms", BigInteger, nullable=False),
    Column("added_total", BigInteger, nullable=False),
)

# Where each recording file lives under the recordings folder, by file name. A cache of the
# folder, not the truth: every hit is checked on disk and a miss refreshes the folders that
# changed (services/recordings.py).
recording_file = Table(
    "recording_file",
    metadata,
    Column("name", String, primary_key=True),
    Column("path", String, nullable=False),  # relative to the recordings folder, "/"-separated
    Column("folder", String, nullable=False, index=True),  # the sub-folder path ("" = top)
)

# Sub-folders of the recordings folder and their mtime when last listed: a refresh lists only
# the folders whose mtime moved (a file added or removed changes its folder's mtime).
recording_folder = Table(
    "recording_folder",
    metadata,
    Column("path", String, primary_key=True),
    Column("mtime_ns", BigInteger, nullable=False),
)

# One-time keys of recording/download: a sibling of cdr_random, so neither kind of random
# opens the other's door.
# Keyed as cdr_random is, and for the same reasons (migration 0013).
recording_random = Table(
    "recording_random",
    metadata,
    Column("expires_ms", BigInteger, primary_key=True),
    Column("random_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("recording", String, nullable=False),
    Column("client_ip", String, nullable=False),
    Column("allowed_ip", String),
    Column("used_ms", BigInteger),
    sqlite_with_rowid=False,
)

# Secret keys shared by every worker and host of one database (storage/server_keys.py): the
# key that signs cdr/get_random's randoms. The value is hex.
server_key = Table(
    "server_key",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", String, nullable=False),
)

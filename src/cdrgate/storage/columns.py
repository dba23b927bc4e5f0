"""The stored columns of a CDR, in the order insert tuples hold them.

A module of its own, importing nothing: a parallel import's child process (ingest/part.py)
needs these names but not SQLAlchemy, whose import would add to its start-up.
"""

COLUMNS = (
    "sn", "callid", "ts", "callfrom", "callto", "callduraction", "talkduraction",
    "srctrunkname", "dsttrunkname", "status", "type", "pincode", "recording", "didnumber", "line",
)  # fmt: skip

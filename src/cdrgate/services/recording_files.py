"""Operator work on the recordings folder: the post-migration scan and pruning files.

A recording file goes when the last CDR naming it goes (CDR retention), or when its newest CDR
is older than the recordings' own age limit; a file another CDR still names stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cdrgate.recfolder import remove, walk
from cdrgate.services.retention import DAY_S, PruneReport, RetentionPolicy, prune
from cdrgate.storage import recordings, retention
from cdrgate.storage.db import Database


@dataclass(frozen=True)
class ScanReport:
    files: int
    referenced: int  # distinct names the CDRs carry
    unreferenced: list[str]  # files no CDR names
    missing: list[str]  # names no file has


@dataclass
class RecordingPruneReport:
    files: list[str] = field(default_factory=list)  # removed or, in a dry run, would be
    dry_run: bool = False
    # Files that could not be removed (a read-only folder, as under the unit's
    # ProtectSystem=strict; another owner's file), each with the system's reason: the rest of
    # the run goes on. The next run tries those past recordings_max_age_days again; one whose
    # CDRs this run removed is named by no CDR after it (recordings scan: unreferenced).
    kept: list[tuple[str, str]] = field(default_factory=list)

    def kept_line(self) -> str | None:
        """One line saying what could not be removed, or None."""
        if not self.kept:
            return None
        path, reason = self.kept[0]
        more = f" (and {len(self.kept) - 1} more)" if len(self.kept) > 1 else ""
        return f"could not remove {len(self.kept)} recording files: {path}: {reason}{more}"


def scan(db: Database, root: str | Path) -> ScanReport:
    files = dict(walk(root))
    with db.read() as conn:
        names = set(recordings.referenced_names(conn))
    names.discard("")
    return ScanReport(
        files=len(files),
        referenced=len(names),
        unreferenced=sorted(set(files) - names),
        missing=sorted(names - set(files)),
    )


def prune_with_recordings(
    db: Database,
    policy: RetentionPolicy,
    now_wall: int,
    *,
    root: str | Path | None,
    recordings_max_age_days: int = 0,
    dry_run: bool = False,
) -> tuple[PruneReport | None, RecordingPruneReport]:
    """CDR retention, then the files it orphaned and the files past their own age."""
    doomed: set[str] = set()
    report = None
    if policy.active:
        cutoff = now_wall - policy.max_age_days * DAY_S if policy.max_age_days else None
        with db.read() as conn:
            boundary = (
                retention.newest_to_remove(conn, policy.max_records) if policy.max_records else None
            )
            where = retention.condition(cutoff, boundary)
            candidates = recordings.names_where(conn, where) if root else []
            doomed.update(set(candidates) - recordings.kept_by_others(conn, candidates, where))
        report = prune(db, policy, now_wall, dry_run)
    if root and recordings_max_age_days:
        with db.read() as conn:
            doomed.update(
                recordings.names_older_than(conn, now_wall - recordings_max_age_days * DAY_S)
            )
    files = RecordingPruneReport(dry_run=dry_run)
    if root and doomed:
        for name, rel in walk(root):
            if name not in doomed:
                continue
            try:
                if dry_run or remove(root, rel):
                    files.files.append(name)
            except OSError as exc:
                files.kept.append((str(Path(root) / rel), exc.strerror or str(exc)))
        if not dry_run:
            with db.write() as conn:
                for name in files.files:
                    recordings.forget_file(conn, name)
    files.files.sort()
    return report, files

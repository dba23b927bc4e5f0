"""Randoms drawn from the CSPRNG in blocks: a forked child never reuses its parent's bytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cdrgate.storage import randoms

# Run in a fresh interpreter: forking pytest's own process (threads included) is unsafe.
_FORKING = textwrap.dedent(
    """
    import os
    from cdrgate.storage import randoms

    def issue(count):
        return [randoms.new_random(1_900_000_000_000).text for _ in range(count)]

    issue(3)  # the parent holds a block it has only begun to use
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        with os.fdopen(write_end, "w") as out:
            out.write("\\n".join(issue(2000)))
        os._exit(0)
    os.close(write_end)
    mine = issue(2000)
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read().split("\\n")
    os.waitpid(child, 0)
    print(len(theirs), len(set(mine) & set(theirs)))
    """
)


def test_a_forked_process_never_issues_a_random_its_parent_issues() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORKING], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["2000", "0"]


def test_randoms_drawn_from_one_block_are_distinct_and_keep_their_shape() -> None:
    issued = [randoms.new_random(1_900_000_000_000) for _ in range(3000)]  # several blocks
    assert len({random.text for random in issued}) == len(issued)
    for random in issued:
        assert randoms.key_of(random.text) == (random.expires_ms, random.random_hash)


def test_a_signed_randoms_spend_inserts_its_row_once_and_says_who_won(db) -> None:
    row = randoms.RandomRow(
        1_900_000_000_000,
        "a" * 64,
        "b" * 64,
        "1000",
        100,
        200,
        "127.0.0.1",
        None,
        1_800_000_000_000,
    )
    with db.write() as conn:
        assert randoms.spend_signed(conn, row)
        assert not randoms.spend_signed(conn, row)
    with db.write() as conn:  # another transaction, a later try: still the loser
        assert not randoms.spend_signed(conn, row._replace(used_ms=1_800_000_000_001))
    with db.read() as conn:
        assert randoms.find(conn, row.expires_ms, row.random_hash) == row

"""Keep PostgreSQL's statistics of the tables that serving grows current while they grow fast.

Serving's statements are prepared once per connection and `arbiter_next` keeps its plans for the
life of its session; PostgreSQL plans them again only when the statistics of a table they read
change (ANALYZE). A plan made while the assignment table was nearly empty reads it with a
sequential scan, which is right for a page and wrong for thousands: a fresh campaign on a fresh
database then scans the whole table several times per judgment, and more the longer it runs.
Autovacuum re-analyzes a table after it grows by a tenth, but visits each database only once a
minute, and a campaign being judged at a few hundred a second doubles its assignment table many
times in that minute.

So every process watches the assignment ids it leases. When they reach twice the first it leased
(and at least 256), it analyzes the assignment and judgment tables, and again each time they
double from there; a process that starts on a database already large analyzes nothing until its
ids double. From an empty table to a million rows that is about twenty times, a few milliseconds
each while the tables are small; ANALYZE samples at most 30,000 rows however large they get. The statement that crosses a
threshold runs it after its own work, outside any transaction; a table another ANALYZE holds is
skipped, not waited for.
"""

from __future__ import annotations

import logging
import threading

from django.db import Error, connection

from annotation.models import Assignment, Judgment

logger = logging.getLogger(__name__)

FIRST_ANALYZE_AT = 256


class GrowthWatch:
    """Analyze the serving tables each time the largest assignment id seen has doubled.

    The first threshold is `first`, or, when None, twice the first id seen (at least
    FIRST_ANALYZE_AT).
    """

    def __init__(self, first: int | None = None) -> None:
        self._next_at = first
        self._lock = threading.Lock()

    @property
    def next_at(self) -> int | None:
        return self._next_at

    def saw(self, assignment_id: int) -> bool:
        """Note a leased assignment id; analyze when it crosses the threshold. True if it did."""
        next_at = self._next_at
        if next_at is not None and assignment_id < next_at:
            return False
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return False
        with self._lock:
            if self._next_at is None:
                self._next_at = max(FIRST_ANALYZE_AT, 2 * assignment_id)
                return False
            if assignment_id < self._next_at:
                return False
            self._next_at = 2 * assignment_id
        return analyze_serving_tables()


def analyze_serving_tables() -> bool:
    """ANALYZE the assignment and judgment tables (PostgreSQL); False if the database refused."""
    q = connection.ops.quote_name
    tables = ", ".join(q(model._meta.db_table) for model in (Assignment, Judgment))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE (SKIP_LOCKED) {tables}")
    except Error:  # the lease is already made; a failure here must not fail `next`
        logger.warning("could not analyze the serving tables", exc_info=True)
        return False
    return True


growth = GrowthWatch()

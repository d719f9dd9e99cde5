"""The serving tables' statistics kept current while they grow (annotation.services.statistics)."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Assignment
from annotation.services.statistics import FIRST_ANALYZE_AT, GrowthWatch, analyze_serving_tables

pytestmark = pytest.mark.django_db(transaction=True)


def lease_all(campaign, annotator) -> int:
    """An assignment for every item of the campaign, written at once; the largest id."""
    now = timezone.now()
    Assignment.objects.bulk_create(
        Assignment(campaign=campaign, item=item, annotator=annotator, display_order=[], leased_at=now,
                   expires_at=now + timedelta(minutes=10))
        for item in campaign.items.all()
    )
    return Assignment.objects.latest("pk").pk


def reltuples() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [Assignment._meta.db_table])
        return cursor.fetchone()[0]


def test_the_watch_analyzes_when_the_largest_id_doubles(postgresql_only, make_campaign, annotator):
    campaign = make_campaign(items=40, annotators=[annotator])
    assert analyze_serving_tables()
    assert reltuples() == 0  # analyzed while empty
    top = lease_all(campaign, annotator)
    watch = GrowthWatch(first=top + 1)
    assert not watch.saw(top)  # below the threshold: nothing runs
    assert reltuples() == 0
    watch = GrowthWatch(first=top)
    assert watch.saw(top)
    assert reltuples() == 40
    assert watch.next_at == 2 * top
    assert not watch.saw(2 * top - 1)


def test_the_first_threshold_is_twice_the_first_id_seen(postgresql_only, make_campaign, annotator):
    """A process that starts on a large table does not analyze it at once; only when ids double."""
    campaign = make_campaign(items=20, annotators=[annotator])
    assert analyze_serving_tables()
    top = lease_all(campaign, annotator)
    watch = GrowthWatch()
    assert not watch.saw(top)
    assert watch.next_at == max(FIRST_ANALYZE_AT, 2 * top) and reltuples() == 0
    assert not watch.saw(watch.next_at - 1)
    assert watch.saw(watch.next_at) and reltuples() == 20


def test_the_watch_waits_outside_a_transaction(postgresql_only, make_campaign, annotator):
    """Inside the caller's transaction it does nothing, and the threshold stays for a later call."""
    campaign = make_campaign(items=10, annotators=[annotator])
    assert analyze_serving_tables()
    top = lease_all(campaign, annotator)
    watch = GrowthWatch(first=top)
    with transaction.atomic():
        assert not watch.saw(top)
    assert reltuples() == 0 and watch.next_at == top
    assert watch.saw(top) and reltuples() == 10


def test_a_plan_cached_on_an_empty_table_is_replaced_after_the_watch_analyzes(postgresql_only, make_campaign, annotator):
    """Why the watch exists: a plan made while the table was empty keeps scanning it whole, however
    large it grows, until the table is analyzed again."""
    campaign = make_campaign(items=600, annotators=[annotator])
    assert analyze_serving_tables()
    table = connection.ops.quote_name(Assignment._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE own_status(bigint) AS SELECT status FROM {table} WHERE id = $1")
        try:

            def plan() -> str:
                cursor.execute("EXPLAIN EXECUTE own_status(1)")
                return " ".join(row[0] for row in cursor.fetchall())

            assert "Seq Scan" in plan()
            top = lease_all(campaign, annotator)
            assert "Seq Scan" in plan()  # 600 rows now, still the plan made for none
            assert GrowthWatch(first=top).saw(top)
            assert "Index Scan" in plan() and "Seq Scan" not in plan()
        finally:
            cursor.execute("DEALLOCATE own_status")
            cursor.execute("RESET plan_cache_mode")


def test_the_watch_does_nothing_on_sqlite(make_campaign, annotator):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    campaign = make_campaign(items=3, annotators=[annotator])
    top = lease_all(campaign, annotator)
    watch = GrowthWatch(first=1)
    assert not watch.saw(top) and watch.next_at == 1


def test_a_failed_analyze_is_logged_not_raised(postgresql_only, monkeypatch, caplog):
    """The lease is made before the watch runs: the database refusing ANALYZE must not fail `next`."""
    monkeypatch.setattr(Assignment._meta, "db_table", "no_such_table")
    assert not analyze_serving_tables()
    assert "could not analyze the serving tables" in caplog.text
    monkeypatch.undo()
    assert analyze_serving_tables()

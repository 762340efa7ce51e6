"""Builds of one program at the same time: real threads, each with its own PostgreSQL
connection; the second waits for the first's lock, and the rows are those of one build."""

import datetime as dt

import pytest
from django.db.models import Sum

from reports.models import AggregateBuild, DailyPoints, MemberActivityDay
from reports.services.aggregates import report_aggregates_build
from tests.loyalty.test_concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_builds_give_the_rows_of_one_build(program, ledger):
    # when four builds of the program start together (the first build of its history)
    results = run_in_threads(
        4, lambda n: report_aggregates_build(program=program, as_of=dt.date(2025, 3, 1))
    )
    # then none failed, one state row exists, and the sums are those of one build
    assert all(isinstance(result, int) for result in results), results
    assert AggregateBuild.objects.filter(program=program).count() == 1
    totals = DailyPoints.objects.filter(program=program).aggregate(
        credited=Sum("credited"), debited=Sum("debited")
    )
    assert totals == {"credited": 150 + 100 + 20, "debited": 30 + 20 + 70}
    assert MemberActivityDay.objects.filter(program=program).count() == 2

"""The member's secondary indexes serve the queries they were made for (migration 0027): an
expression or partial index that does not match a query's own expression is silently never
used, so each is checked against the SQL Django writes for that query."""

import pytest
from django.db import connection

from loyalty.api.filters import MemberFilter
from loyalty.models import Member
from tests.factories import MemberFactory, ProgramFactory

pytestmark = pytest.mark.django_db


def _plan(queryset) -> str:
    """The plan PostgreSQL chooses when any index that can serve the query beats a scan."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def members():
    program = ProgramFactory()
    MemberFactory(program=program, email="Anna@Example.com")
    MemberFactory(program=program, status=Member.Status.SUSPENDED)
    return Member.objects.filter(program=program).order_by("-enrolled_at", "-id")


def test_the_apis_email_filter_uses_the_upper_email_index(members):
    filtered = MemberFilter({"email": "anna@example.com"}, queryset=members).qs
    assert [m.email for m in filtered] == ["Anna@Example.com"]
    assert "member_email_upper" in _plan(filtered)


@pytest.mark.parametrize(
    "condition",
    [{"status": Member.Status.SUSPENDED}, {"status__in": [Member.Status.CLOSED, "inactive"]}],
)
def test_a_filter_by_statuses_other_than_active_uses_the_partial_index(members, condition):
    assert "member_status_not_active" in _plan(members.filter(**condition))


def test_active_members_are_not_in_the_status_index(members):
    """The index holds no entry for active members (the point of its condition); a filter
    on `active` is served otherwise."""
    assert "member_status_not_active" not in _plan(members.filter(status=Member.Status.ACTIVE))

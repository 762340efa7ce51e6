"""Refreshes and scoring runs racing each other (real threads, one connection each) end with
the same rows as one run: no duplicate membership, no failed run, the right count."""

import pytest

from loyalty.models import MemberScore, Segment, SegmentMembership
from loyalty.services.rfm import rfm_score
from loyalty.services.segments import segment_refresh, segment_save
from tests.factories import MemberFactory
from tests.loyalty.test_concurrency import run_in_threads
from tests.segments.conftest import AS_OF, days_ago, purchase

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_refreshes_of_one_segment(program):
    for i in range(20):
        MemberFactory(program=program, enrolled_at=days_ago(100 + i))
    segment = segment_save(program=program, code="all", name="All", conditions={})
    results = run_in_threads(6, lambda n: segment_refresh(segment=segment, as_of=AS_OF))
    assert all(isinstance(r, Segment) for r in results), results
    assert SegmentMembership.objects.filter(segment=segment).count() == 20
    assert Segment.objects.get(pk=segment.pk).member_count == 20


def test_parallel_scoring_runs(program):
    for i in range(15):
        member = MemberFactory(program=program, enrolled_at=days_ago(300))
        purchase(member, days=i + 1, amount=f"{i + 1}.00")
    results = run_in_threads(4, lambda n: rfm_score(program=program, as_of=AS_OF))
    # one run scores everyone; the others, serialised behind it, find nothing to change
    assert sorted(results) == [0, 0, 0, 15]
    assert MemberScore.objects.filter(program=program).count() == 15

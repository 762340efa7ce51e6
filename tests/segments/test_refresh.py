"""The refresh job materialises segment members set-based and idempotently; earning rules with
a `segments` condition read those members; the jobs run RFM before segments."""

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from loyalty import jobs, selectors
from loyalty.exceptions import ValidationFailed
from loyalty.models import LedgerEntry, Member, Segment, SegmentMembership
from loyalty.services.segments import segment_refresh, segment_save, segments_refresh
from tests.factories import EarningRuleFactory, MemberFactory
from tests.segments.conftest import AS_OF, days_ago, purchase

pytestmark = pytest.mark.django_db


def members_of(segment) -> set[str]:
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list(
            "member__membership_number", flat=True
        )
    )


@pytest.fixture
def lapsing(program):
    return segment_save(
        program=program, code="lapsing", name="Lapsing", conditions={"inactive_days_min": 60}
    )


def test_refresh_inserts_new_members_deletes_gone_ones_and_counts(program, lapsing):
    # given
    a = MemberFactory(program=program, membership_number="A", enrolled_at=days_ago(300))
    MemberFactory(program=program, membership_number="B", enrolled_at=days_ago(300))
    MemberFactory(program=program, membership_number="C", enrolled_at=days_ago(10))
    # when
    segment = segment_refresh(segment=lapsing, as_of=AS_OF)
    # then
    assert members_of(lapsing) == {"A", "B"}
    assert (segment.member_count, segment.refreshed_as_of) == (2, AS_OF)
    assert segment.refreshed_at is not None
    first_added = SegmentMembership.objects.get(segment=lapsing, member=a).added_at
    # A buys again: gone at the next refresh; B stays with its row untouched
    purchase(a, days=3)
    b_row = SegmentMembership.objects.get(segment=lapsing, member__membership_number="B")
    segment = segment_refresh(segment=lapsing, as_of=AS_OF)
    assert members_of(lapsing) == {"B"}
    assert segment.member_count == 1
    assert SegmentMembership.objects.get(pk=b_row.pk).added_at == b_row.added_at
    assert first_added is not None


def test_refreshing_twice_changes_nothing(program, lapsing):
    for i in range(3):
        MemberFactory(program=program, enrolled_at=days_ago(100 + i))
    segment_refresh(segment=lapsing, as_of=AS_OF)
    rows = list(SegmentMembership.objects.order_by("pk").values_list("pk", "member_id", "added_at"))
    segment_refresh(segment=lapsing, as_of=AS_OF)
    assert (
        list(SegmentMembership.objects.order_by("pk").values_list("pk", "member_id", "added_at"))
        == rows
    )
    assert Segment.objects.get(pk=lapsing.pk).member_count == 3


def test_an_inactive_segment_holds_nobody(program, lapsing):
    MemberFactory(program=program, enrolled_at=days_ago(100))
    segment_refresh(segment=lapsing, as_of=AS_OF)
    assert members_of(lapsing)
    Segment.objects.filter(pk=lapsing.pk).update(status=Segment.Status.INACTIVE)
    segment = segment_refresh(segment=lapsing, as_of=AS_OF)
    assert members_of(lapsing) == set()
    assert segment.member_count == 0


def test_the_job_refreshes_every_segment_and_skips_invalid_ones(program, lapsing):
    MemberFactory(program=program, enrolled_at=days_ago(100))
    everyone = segment_save(program=program, code="all", name="All", conditions={})
    broken = Segment.objects.create(
        program=program,
        code="broken",
        name="Broken",
        conditions={"balance_min": "1", "balance_currency": "GONE"},
    )
    assert segments_refresh(program=program, as_of=AS_OF) == 2
    assert Segment.objects.get(pk=everyone.pk).member_count == 1
    assert Segment.objects.get(pk=broken.pk).refreshed_at is None


def test_run_jobs_scores_then_refreshes(program):
    MemberFactory(program=program, enrolled_at=days_ago(1000))
    MemberFactory(program=program, enrolled_at=days_ago(1))
    lost = segment_save(
        program=program, code="lost", name="Lost", conditions={"rfm_labels": ["lost"]}
    )
    names = jobs.job_names()
    assert names.index("rfm") < names.index("segments")
    # when both run in one go, the segment reads the scores just computed
    rows = jobs.run_jobs(as_of=AS_OF, program_code="coffee", only=["rfm", "segments"])
    assert rows == [("coffee", "rfm", 2), ("coffee", "segments", 1)]
    assert Segment.objects.get(pk=lost.pk).member_count == 1


def test_membership_is_unique(program, lapsing):
    member = MemberFactory(program=program)
    SegmentMembership.objects.create(segment=lapsing, member=member, added_at=days_ago(0))
    with pytest.raises(IntegrityError), transaction.atomic():
        SegmentMembership.objects.create(segment=lapsing, member=member, added_at=days_ago(0))


def test_segment_codes_are_unique_per_program(program, lapsing):
    with pytest.raises(ValidationFailed) as refused:
        segment_save(program=program, code="lapsing", name="Again", conditions={})
    assert refused.value.fields == {"code": "already used in this program"}
    with pytest.raises(IntegrityError), transaction.atomic():
        Segment.objects.create(program=program, code="lapsing", name="Again")


def test_saving_bad_conditions_names_each_key_and_writes_nothing(program):
    with pytest.raises(ValidationFailed) as refused:
        segment_save(
            program=program,
            code="bad",
            name="Bad",
            conditions={"spend_min": "10", "colour": "red"},
        )
    assert set(refused.value.fields) == {"conditions.colour", "conditions.spend_days"}
    assert refused.value.code == "invalid"
    assert not Segment.objects.filter(code="bad").exists()


def test_member_segment_codes_read_active_materialised_segments(program, lapsing):
    member = MemberFactory(program=program, enrolled_at=days_ago(100))
    assert selectors.member_segment_codes(member) == frozenset()
    segment_refresh(segment=lapsing, as_of=AS_OF)
    assert selectors.member_segment_codes(member) == frozenset({"lapsing"})
    Segment.objects.filter(pk=lapsing.pk).update(status=Segment.Status.INACTIVE)
    assert selectors.member_segment_codes(member) == frozenset()


def test_an_earning_rule_with_a_segment_condition_fires_for_members_of_the_segment(
    program, pts, base_rules, post
):
    # given a bonus for the "vip" segment (members from Poland)
    EarningRuleFactory(
        program=program,
        code="vip-bonus",
        conditions={"subtypes": ["purchase"], "segments": ["vip"]},
        award={"type": "fixed", "currency": "PTS", "points": "100"},
    )
    vip = segment_save(program=program, code="vip", name="VIP", conditions={"countries": ["PL"]})
    inside = MemberFactory(program=program, country="PL")
    outside = MemberFactory(program=program, country="DE")
    segment_refresh(segment=vip, as_of=dt.date.today())
    # when
    post(inside, amount=10)
    post(outside, amount=10)

    # then
    def rules_of(member):
        return set(
            LedgerEntry.objects.filter(member=member, currency=pts).values_list(
                "rule__code", flat=True
            )
        )

    assert rules_of(inside) == {"base", "vip-bonus"}
    assert rules_of(outside) == {"base"}


def test_merged_members_leave_their_segments_at_the_next_refresh(program, lapsing):
    survivor = MemberFactory(program=program, enrolled_at=days_ago(100))
    duplicate = MemberFactory(program=program, enrolled_at=days_ago(100))
    segment_refresh(segment=lapsing, as_of=AS_OF)
    Member.objects.filter(pk=duplicate.pk).update(merged_into=survivor)
    segment_refresh(segment=lapsing, as_of=AS_OF)
    assert set(SegmentMembership.objects.values_list("member_id", flat=True)) == {survivor.pk}

"""Posting's per-process cache of a program's configuration (`selectors.program_posting_config`)
is never used stale: every change to what it holds, made any way (here by `QuerySet.update`,
which no signal sees, as another process's change would be), bumps the program's
`config_version` by trigger, and the very next post reads the configuration again.

A change made here does not touch this process's cache: the cache learns of it only through
the version read with the member lock, exactly as a process that did not make the change."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction

from loyalty import selectors
from loyalty.models import Currency, EarningRule, LedgerEntry, MemberTier, Program
from partners.models import PartnerCategory, PartnerProgram
from promotions.models import Promotion
from tests.factories import PartnerFactory, PartnerProgramFactory
from tests.loyalty.test_tiers import make_group

pytestmark = pytest.mark.django_db


def version(program) -> int:
    return Program.objects.values_list("config_version", flat=True).get(pk=program.pk)


def points_of(result, code: str) -> int:
    return sum(
        e.points
        for e in LedgerEntry.objects.filter(transaction=result.transaction, currency__code=code)
    )


@pytest.fixture
def warm(program, base_rules, member, post):
    """The cache holds the program's configuration, read by a first post."""
    assert post(member, amount=10).created
    cached = selectors.program_posting_config(Program.objects.get(pk=program.pk))
    assert cached.version == version(program)
    return cached


def test_a_rule_changed_by_a_bulk_update_is_seen_by_the_next_post(program, member, post, warm):
    before = version(program)
    EarningRule.objects.filter(program=program, code="base").update(
        award={"type": "per_amount", "currency": "PTS", "points": "3", "per": "1.00"}
    )
    assert version(program) != before
    assert points_of(post(member, amount=10), "PTS") == 30


def test_a_rule_deactivated_is_not_applied_by_the_next_post(program, member, post, warm):
    EarningRule.objects.filter(program=program, code="base").update(
        status=EarningRule.Status.INACTIVE
    )
    assert points_of(post(member, amount=10), "PTS") == 0


def test_a_currency_change_is_seen_by_the_next_post(program, pts, member, post, warm):
    Currency.objects.filter(pk=pts.pk).update(escrow_days=30)
    entries = LedgerEntry.objects.filter(transaction=post(member, amount=10).transaction)
    assert entries.get(currency=pts).pool == LedgerEntry.Pool.PENDING


def test_a_promotion_activated_is_seen_by_the_next_post(program, member, post, warm):
    promotion = Promotion.objects.create(
        program=program,
        code="double",
        name="Double",
        status=Promotion.Status.DRAFT,
        starts_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        eligibility={"subtypes": ["purchase"]},
        reward={"type": "fixed", "currency": "PTS", "points": "100"},
        holdout_percent=Decimal("0"),
    )
    assert points_of(post(member, amount=10), "PTS") == 10
    Promotion.objects.filter(pk=promotion.pk).update(status=Promotion.Status.ACTIVE)
    assert points_of(post(member, amount=10), "PTS") == 110


def test_a_partner_category_added_is_seen_by_the_next_post(program, member, post, warm):
    partner = PartnerProgramFactory(program=program, partner=PartnerFactory(code="cafe")).partner
    PartnerCategory.objects.create(program=program, partner=partner, category="coffee")
    line = {
        "sku": "LATTE",
        "category": "coffee",
        "quantity": Decimal("1"),
        "unit_price": Decimal("10"),
    }
    result = post(member, amount=10, lines=[line])
    assert set(result.transaction.lines.values_list("partner_id", flat=True)) == {partner.pk}


def test_prepaid_terms_are_seen_by_the_next_post(program, member, post, warm):
    terms = PartnerProgramFactory(program=program, partner=PartnerFactory(code="cafe"))
    line = {
        "sku": "LATTE",
        "category": "coffee",
        "quantity": Decimal("1"),
        "unit_price": Decimal("10"),
    }
    PartnerCategory.objects.create(program=program, partner=terms.partner, category="coffee")
    assert post(member, amount=10, lines=[line]).created
    # the partner becomes prepaid with an empty pack: its points are refused
    PartnerProgram.objects.filter(pk=terms.pk).update(
        billing=PartnerProgram.Billing.PREPAID, prepaid_points_balance=0
    )
    with pytest.raises(Exception, match="prepaid pack"):
        post(member, amount=10, lines=[line])


def test_a_tier_group_created_is_seen_by_the_next_post(program, tqp, member, post, warm):
    group = make_group(program, tqp)
    post(member, amount=600)
    assert MemberTier.objects.get(member=member, group=group).tier.code == "silver"


def test_a_rolled_back_change_never_matches_a_cached_configuration(program, member, post, warm):
    # given a change that a post saw (and cached), then rolled back
    with pytest.raises(RuntimeError), transaction.atomic():
        EarningRule.objects.filter(program=program, code="base").update(
            award={"type": "per_amount", "currency": "PTS", "points": "5", "per": "1.00"}
        )
        assert points_of(post(member, amount=10), "PTS") == 50
        raise RuntimeError("roll back")
    # then the version is back to its earlier value, which the cached one is not: the next
    # post reads the configuration as it is
    assert selectors.program_posting_config(Program.objects.get(pk=program.pk)) is not warm
    assert points_of(post(member, amount=10), "PTS") == 10


def test_saving_a_program_read_before_a_change_keeps_the_newer_version(program, warm):
    stale = Program.objects.get(pk=program.pk)
    EarningRule.objects.filter(program=program, code="base").update(priority=5)
    bumped = version(program)
    stale.name = "Renamed"
    stale.save()  # writes back the config_version it read
    assert version(program) == bumped


def test_an_unchanged_configuration_is_read_once(
    program, member, post, warm, django_assert_num_queries
):
    fresh = Program.objects.get(pk=program.pk)
    with django_assert_num_queries(0):
        assert selectors.program_posting_config(fresh) is warm


def test_a_fresh_process_reads_the_configuration_again(program, member, post, warm):
    selectors.posting_configs_clear()
    assert selectors.program_posting_config(Program.objects.get(pk=program.pk)) is not warm

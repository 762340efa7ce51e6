"""Reward purchases (points and voucher in one transaction, idempotent), the expiry and
notice jobs in run_jobs, stale reservations, bulk issue, and tier benefits' vouchers."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty import jobs
from loyalty.exceptions import IdempotencyConflict, InsufficientPoints, NotFound
from loyalty.models import Balance, Benefit, MemberEvent, Transaction
from loyalty.selectors import ledger_drifts
from tests.factories import MemberFactory
from tests.loyalty.test_tiers import d, local, make_group
from vouchers.exceptions import (
    VoucherDefinitionUnavailable,
    VoucherLimitReached,
    VoucherOutOfStock,
)
from vouchers.models import Voucher, VoucherBulkIssue, VoucherReservation
from vouchers.services.expiry import voucher_reservations_release_expired
from vouchers.services.issue import voucher_bulk_issue_start, vouchers_bulk_issue
from vouchers.services.redemption import voucher_reserve
from vouchers.services.rewards import reward_purchase

UTC = dt.UTC
D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def reward(make_definition, pts):
    return make_definition(code="coffee-5", points_cost=500, points_currency=pts, stock=10)


@pytest.fixture
def rich(member, pts, post):
    post(member, "adjustment", points=1200, points_currency="PTS", reason="opening")
    return member


def available(member):
    return Balance.objects.get(member=member, currency__code="PTS").available


def buy(member, external_id="buy-1", code="coffee-5"):
    return reward_purchase(
        program=member.program,
        definition_code=code,
        member=member.membership_number,
        external_id=external_id,
        actor="api",
    )


# --- reward purchase ------------------------------------------------------------------------


def test_a_purchase_spends_the_points_and_issues_the_voucher(reward, rich):
    result = buy(rich)
    assert result.created
    voucher = result.voucher
    assert (voucher.source, voucher.definition, voucher.member) == ("points_purchase", reward, rich)
    txn = voucher.transaction
    assert (txn.external_id, txn.type, txn.subtype, txn.points) == (
        "buy-1",
        "redemption",
        "reward",
        500,
    )
    assert available(rich) == 700
    assert ledger_drifts(rich.program) == []


def test_a_replay_returns_the_same_voucher_and_spends_nothing(reward, rich):
    first = buy(rich)
    again = buy(rich)
    assert not again.created
    assert again.voucher.pk == first.voucher.pk
    assert available(rich) == 700
    assert Voucher.objects.count() == 1


def test_the_id_reused_for_another_member_or_reward_is_a_conflict(
    reward, make_definition, pts, rich, post
):
    make_definition(code="tea", points_cost=100, points_currency=pts)
    buy(rich)
    with pytest.raises(IdempotencyConflict) as refused:
        buy(rich, code="tea")
    assert set(refused.value.fields) == {"code"}
    other = MemberFactory(program=rich.program)
    with pytest.raises(IdempotencyConflict):
        buy(other)
    post(rich, external_id="a-purchase", amount=10)
    with pytest.raises(IdempotencyConflict):
        buy(rich, external_id="a-purchase")


def test_not_enough_points_issues_nothing(reward, member, post):
    post(member, "adjustment", points=499, points_currency="PTS", reason="opening")
    with pytest.raises(InsufficientPoints):
        buy(member)
    assert not Voucher.objects.exists()
    reward.refresh_from_db()
    assert reward.issued_count == 0


def test_out_of_stock_spends_no_points(make_definition, pts, rich):
    make_definition(code="coffee-5", points_cost=500, points_currency=pts, stock=0)
    with pytest.raises(VoucherOutOfStock):
        buy(rich)
    assert available(rich) == 1200
    assert not Transaction.objects.filter(type="redemption").exists()


def test_the_per_member_limit_spends_no_points(make_definition, pts, rich):
    make_definition(code="coffee-5", points_cost=500, points_currency=pts, per_member_limit=1)
    buy(rich)
    with pytest.raises(VoucherLimitReached):
        buy(rich, external_id="buy-2")
    assert available(rich) == 700


def test_a_definition_without_points_cost_is_not_for_sale(make_definition, rich):
    make_definition(code="gift-only")
    with pytest.raises(VoucherDefinitionUnavailable):
        buy(rich, code="gift-only")
    with pytest.raises(NotFound):
        buy(rich, code="nope")


# --- jobs -----------------------------------------------------------------------------------------


def run(program, day, only=None):
    return {
        job: n for _, job, n in jobs.run_jobs(as_of=d(day), program_code=program.code, only=only)
    }


def test_run_jobs_lists_the_voucher_jobs_after_loyaltys():
    names = jobs.job_names()
    mine = ["voucher_reservations", "voucher_expiry", "voucher_expiring"]
    start = names.index(mine[0])
    assert names[start : start + 3] == mine
    assert start > names.index("anniversaries")  # after loyalty's own
    assert names[-1] == "notifications"  # the events they write are delivered last


def test_a_voucher_valid_through_d_minus_1_is_expired_as_of_d(
    program, make_definition, member, issue
):
    definition = make_definition(valid_until=d("2026-03-10"), partial_redemption=True)
    voucher = issue(definition, member, issued_at=local("2026-03-01"))
    voucher_reserve(
        program=program,
        code=voucher.code,
        member=member.membership_number,
        amount=D("1.00"),
        now=local("2026-03-10", 23),
    )
    only = ["voucher_expiry"]
    assert run(program, "2026-03-10", only)["voucher_expiry"] == 0
    assert run(program, "2026-03-11", only)["voucher_expiry"] == 1
    assert run(program, "2026-03-11", only)["voucher_expiry"] == 0
    voucher.refresh_from_db()
    assert (voucher.status, voucher.reserved_value) == ("expired", D("0"))
    assert voucher.expired_at == local("2026-03-11", 0)
    assert VoucherReservation.objects.get().status == "released"


def test_voucher_expiring_events_seven_days_ahead_once(program, make_definition, member, issue):
    definition = make_definition(valid_until=d("2026-03-20"))
    voucher = issue(definition, member, issued_at=local("2026-03-01"))
    only = ["voucher_expiring"]
    assert run(program, "2026-03-12", only)["voucher_expiring"] == 0
    assert run(program, "2026-03-13", only)["voucher_expiring"] == 1
    assert run(program, "2026-03-14", only)["voucher_expiring"] == 0
    event = MemberEvent.objects.get(type="voucher_expiring")
    assert event.payload["code"] == voucher.code
    assert event.payload["last_valid_day"] == "2026-03-20"
    assert event.occurred_at == local("2026-03-13", 0)


def test_stale_reservations_are_released_by_the_job(fixed, member, issue):
    voucher = issue(fixed, member)
    now = dt.datetime.now(UTC)
    voucher_reserve(
        program=voucher.program,
        code=voucher.code,
        member=member.membership_number,
        amount=D("3.00"),
        now=now,
    )
    assert voucher_reservations_release_expired(as_of=now) == 0
    assert voucher_reservations_release_expired(as_of=now + dt.timedelta(minutes=30)) == 1
    voucher.refresh_from_db()
    assert voucher.reserved_value == 0


# --- bulk issue -------------------------------------------------------------------------------


def test_bulk_issue_issues_to_each_member_once_and_reports_refusals(
    fixed, member, django_capture_on_commit_callbacks
):
    second = MemberFactory(program=member.program)
    suspended = MemberFactory(program=member.program, status="suspended")
    numbers = [member.membership_number, second.membership_number, suspended.membership_number]
    with django_capture_on_commit_callbacks(execute=True):
        job = voucher_bulk_issue_start(
            definition=fixed,
            membership_numbers=[*numbers, "M-0000-0000", member.membership_number],
            actor="manager",
        )
    job.refresh_from_db()  # run by the eager Celery task on commit
    assert (job.status, job.total, job.processed, job.issued, job.refused) == ("done", 4, 4, 2, 2)
    assert {e["code"] for e in job.errors} == {"member_not_active", "unknown_member"}
    # run again (a redelivered task): nothing new
    job.status = VoucherBulkIssue.Status.RUNNING
    job.save()
    vouchers_bulk_issue(job=job)
    assert Voucher.objects.count() == 2
    assert Voucher.objects.filter(source_reference=f"bulk:{job.pk}").count() == 2


# --- tier benefits ---------------------------------------------------------------------------


@pytest.fixture
def birthday_voucher(program, tqp, make_definition):
    group = make_group(program, tqp)
    definition = make_definition(code="birthday-cake", kind="free_product", skus=["cake"])
    benefit = Benefit.objects.create(
        program=program,
        code="birthday",
        name="Birthday cake",
        kind="birthday_gift",
        voucher_definition="birthday-cake",
    )
    benefit.tiers.set(group.tiers.all())
    return definition


@pytest.fixture
def enrol(program, tqp, base_rules):
    from loyalty.services.members import member_enrol

    def _enrol(day="2024-06-01", **profile):
        at = local(day, 12)
        return member_enrol(program=program, enrolled_at=at, now=at, **profile)

    return _enrol


def test_a_birthday_benefit_issues_its_voucher_once_a_year(program, birthday_voucher, enrol):
    member = enrol(birth_date=dt.date(1990, 3, 1))
    assert run(program, "2025-03-01")["birthdays"] == 1
    assert run(program, "2025-03-02")["birthdays"] == 0
    voucher = Voucher.objects.get(member=member)
    assert (voucher.source, voucher.definition) == ("benefit", birthday_voucher)
    assert voucher.source_reference.startswith(f"tessera:birthday:{member.membership_number}:2025")
    assert voucher.issued_at == local("2025-03-01", 0)
    run(program, "2026-03-01")
    assert Voucher.objects.filter(member=member).count() == 2


def test_a_points_gift_survives_its_voucher_being_out_of_stock(
    program, birthday_voucher, enrol, pts
):
    birthday_voucher.stock = 0
    birthday_voucher.save()
    Benefit.objects.filter(code="birthday").update(value=D("50"), points_currency=pts)
    member = enrol(birth_date=dt.date(1990, 3, 1))
    run(program, "2025-03-01")
    assert not Voucher.objects.exists()
    assert available(member) == 50
    # stock arrives: the next run issues the voucher, and no second gift of points
    birthday_voucher.stock = 5
    birthday_voucher.save()
    assert run(program, "2025-03-02")["birthdays"] == 1
    assert Voucher.objects.filter(member=member).count() == 1
    assert available(member) == 50


def test_without_the_issuer_setting_no_voucher_is_issued(
    program, birthday_voucher, enrol, settings
):
    settings.TESSERA_BENEFIT_VOUCHER_ISSUER = ""
    enrol(birth_date=dt.date(1990, 3, 1))
    run(program, "2025-03-01")
    assert not Voucher.objects.exists()


def test_the_celery_tasks_run_the_same_services(fixed, member, issue, settings):
    from vouchers.tasks import voucher_reservations_release_task, vouchers_expiry_task

    assert "voucher-reservations-release" in settings.CELERY_BEAT_SCHEDULE
    voucher = issue(fixed, member, issued_at=local("2026-01-01"))
    voucher_reserve(
        program=voucher.program,
        code=voucher.code,
        member=member.membership_number,
        amount=D("1.00"),
        now=local("2026-01-01"),
    )
    assert voucher_reservations_release_task.delay().get() == 1
    results = vouchers_expiry_task.delay(as_of="2026-03-01", program="coffee").get()
    assert ("coffee", "voucher_expiry", 1) in [tuple(r) for r in results]
    voucher.refresh_from_db()
    assert voucher.status == "expired"


def test_a_late_run_issues_the_birthday_voucher_as_of_its_date(program, birthday_voucher, enrol):
    member = enrol(birth_date=dt.date(1990, 3, 1))
    run(program, "2025-03-05")
    voucher = Voucher.objects.get(member=member)
    assert voucher.issued_at == local("2025-03-05", 0)

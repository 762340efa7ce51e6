"""Two partners of the coffee program, each with a portal user and its own transactions, and a
joint promotion funded by the first: what the portal's tests read."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from loyalty import dates
from loyalty.pipeline import Decision, ExtraCredit, PostingExtension
from partners.models import (
    Partner,
    PartnerCategory,
    PartnerProduct,
    PartnerStatement,
    PartnerUser,
)
from partners.services.partner_users import partner_user_create
from partners.services.statements import partner_statements_build
from promotions.models import Promotion, PromotionFunding
from tests.factories import MemberFactory, PartnerFactory, PartnerProgramFactory

PASSWORD = "portal-tests-passphrase"
UTC = dt.UTC


class DoubleBeans(PostingExtension):
    """A test promotion mechanic: 10 extra PTS on every purchase with a line of bean-co,
    recorded as the reward of the promotion `double-beans` (the promotions engine is another
    app's; the portal only reads the entries it writes)."""

    label = "double beans"

    def load(self, run):
        self.promotion = Promotion.objects.filter(program=run.program, code="double-beans").first()

    def decide(self, accrual):
        if self.promotion is None:
            return None
        if not any(line.sku.startswith("BEAN") for line in accrual.request.lines):
            return None
        return Decision(
            credits=[ExtraCredit("PTS", 10, "double beans", promotion_id=self.promotion.pk)]
        )


@dataclass
class World:
    beans: Partner
    mugs: Partner
    beans_user: PartnerUser
    mugs_user: PartnerUser
    members: list
    results: dict  # external id -> PostResult


def login(client, partner_user: PartnerUser):
    client.force_login(partner_user.user)
    return client


@pytest.fixture
def world(settings, program, pts, tqp, base_rules, post) -> World:
    settings.TESSERA_POSTING_EXTENSIONS = [
        "loyalty.extensions.caps.EarningRuleCaps",
        "tests.partners.portal.conftest.DoubleBeans",
    ]
    beans = PartnerFactory(code="bean-co", name="Bean & Co")
    mugs = PartnerFactory(code="mug-house", name="Mug House")
    for partner in (beans, mugs):
        PartnerProgramFactory(partner=partner, program=program)
    PartnerProduct.objects.create(
        program=program, partner=beans, sku="BEAN-ESP-250", name="Espresso blend"
    )
    PartnerCategory.objects.create(program=program, partner=beans, category="coffee")
    PartnerProduct.objects.create(
        program=program, partner=mugs, sku="MUG-CLASSIC", name="Classic mug"
    )
    promotion = Promotion.objects.create(
        program=program,
        code="double-beans",
        name="Double beans",
        status=Promotion.Status.ACTIVE,
        reward={"type": "fixed", "currency": "PTS", "points": 10},
    )
    PromotionFunding.objects.create(promotion=promotion, partner=beans, percent=Decimal("40"))
    beans_user = partner_user_create(
        partner=beans, username="beans", email="b@bean-co.example", password=PASSWORD, actor="t"
    )
    mugs_user = partner_user_create(
        partner=mugs, username="mugs", email="m@mug.example", password=PASSWORD, actor="t"
    )
    members = [MemberFactory(program=program, membership_number=f"M-2345-678{i}") for i in (2, 3)]
    now = timezone.now()
    # Every transaction in the current month of the program, even run just after midnight.
    month_start = dates.start_of_day(
        dates.local_date(now, program.timezone).replace(day=1), program.timezone
    )

    def ago(minutes: int) -> dt.datetime:
        return max(
            now - dt.timedelta(minutes=minutes), month_start + dt.timedelta(seconds=60 - minutes)
        )

    results = {}

    def line(sku, category, quantity, price):
        return {
            "sku": sku,
            "category": category,
            "quantity": Decimal(quantity),
            "unit_price": Decimal(price),
        }

    # At bean-co (the transaction names it): 30.00 EUR -> 30 PTS + 10 promotion PTS.
    results["beans-1"] = post(
        members[0],
        external_id="beans-1",
        amount="30.00",
        currency="EUR",
        channel="partner",
        partner="bean-co",
        lines=[line("BEAN-ESP-250", "coffee", "2", "15.00")],
        occurred_at=ago(30),
    )
    # A shared basket: bean-co's line by category (20.00), mug-house's by sku (11.00).
    results["basket-1"] = post(
        members[1],
        external_id="basket-1",
        amount="31.00",
        currency="EUR",
        channel="store",
        lines=[
            line("BEAN-ETH-250", "coffee", "1", "20.00"),
            line("MUG-CLASSIC", "cups", "1", "11"),
        ],
        occurred_at=ago(20),
    )
    # Only mug-house (the transaction names it).
    results["mugs-1"] = post(
        members[1],
        external_id="mugs-1",
        amount="22.00",
        currency="EUR",
        channel="partner",
        partner="mug-house",
        lines=[line("MUG-CLASSIC", "cups", "2", "11.00")],
        occurred_at=ago(10),
    )
    # A redemption at bean-co.
    results["beans-rdm"] = post(
        members[0],
        "redemption",
        external_id="beans-rdm",
        subtype="reward",
        points="25",
        points_currency="PTS",
        partner="bean-co",
        occurred_at=ago(5),
    )
    # Last month: one purchase at each partner (the chart's other bar, the statements).
    last_month = month_start - dt.timedelta(days=10)
    for code, member, amount in (
        ("bean-co", members[0], "12.00"),
        ("mug-house", members[1], "7.00"),
    ):
        results[f"{code}-old"] = post(
            member,
            external_id=f"{code}-old",
            amount=amount,
            currency="EUR",
            channel="partner",
            partner=code,
            occurred_at=last_month,
        )
    return World(beans, mugs, beans_user, mugs_user, members, results)


@pytest.fixture
def statements(world, program):
    """Last month's statements of both partners, closed as the monthly job closes them."""
    partner_statements_build(
        as_of=dates.local_date(timezone.now(), program.timezone),
        program=program,
        now=timezone.now() + dt.timedelta(minutes=30),  # past the settling margin
    )
    return {s.partner.code: s for s in PartnerStatement.objects.select_related("partner")}


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(
        "manager", password=PASSWORD, is_staff=True, is_superuser=True
    )

"""The admin (the program manager's tool): every page renders, members are enrolled and edited
through the services, manual adjustments post through `transaction_post` with a reason and
refuse overdrafts without writing, and the journal and the ledger cannot be edited by anyone."""

import re
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    EarningRule,
    LedgerEntry,
    Member,
    MemberTier,
    Transaction,
    TransactionLine,
)
from loyalty.selectors import member_balances
from partners.models import PartnerCategory, PartnerProduct, PartnerProgram
from tests.factories import (
    CurrencyFactory,
    EarningRuleFactory,
    MemberFactory,
    PartnerFactory,
    PartnerProgramFactory,
)
from tests.loyalty.test_tiers import make_group


def url(model_name: str, action: str = "changelist", *args, app: str = "loyalty") -> str:
    return reverse(f"admin:{app}_{model_name}_{action}", args=args)


def available(member, code="PTS") -> Decimal:
    [view] = [v for v in member_balances(member) if v.currency.code == code]
    return view.display(view.available)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def partner(program):
    return PartnerProgramFactory(program=program, partner=PartnerFactory(code="cafe")).partner


@pytest.fixture
def history(program, pts, tqp, base_rules, member, partner, post):
    """A member with a purchase (with lines, at a partner) and a redemption: entries, buckets,
    an allocation and balances exist."""
    PartnerProduct.objects.create(program=program, partner=partner, sku="LATTE", name="Latte")
    PartnerCategory.objects.create(program=program, partner=partner, category="drinks")
    purchase = post(
        member,
        amount="120.00",
        currency="EUR",
        channel="store",
        partner="cafe",
        lines=[{"sku": "LATTE", "quantity": Decimal("2"), "unit_price": Decimal("60.00")}],
    ).transaction
    redemption = post(
        member, "redemption", subtype="reward", points="20", points_currency="PTS"
    ).transaction
    return purchase, redemption


# --- every page renders --------------------------------------------------------------------


CHANGELISTS = [
    ("loyalty", "program"),
    ("loyalty", "currency"),
    ("loyalty", "earningrule"),
    ("loyalty", "member"),
    ("loyalty", "transaction"),
    ("loyalty", "transactionline"),
    ("loyalty", "ledgerentry"),
    ("loyalty", "bucket"),
    ("loyalty", "bucketallocation"),
    ("loyalty", "balance"),
    ("partners", "partner"),
    ("partners", "partnerprogram"),
    ("partners", "partnerproduct"),
    ("partners", "partnercategory"),
]


@pytest.mark.parametrize(("app", "model_name"), CHANGELISTS)
def test_every_changelist_renders(admin_client, history, app, model_name):
    response = admin_client.get(url(model_name, app=app))

    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


def test_every_change_page_renders(admin_client, history, program, pts, member, partner):
    purchase, redemption = history
    entry = purchase.entries.first()
    pages = [
        url("program", "change", program.pk),
        url("currency", "change", pts.pk),
        url("earningrule", "change", EarningRule.objects.first().pk),
        url("member", "change", member.pk),
        url("transaction", "change", purchase.pk),
        url("transaction", "change", redemption.pk),
        url("transactionline", "change", TransactionLine.objects.first().pk),
        url("ledgerentry", "change", entry.pk),
        url("ledgerentry", "change", redemption.entries.first().pk),
        url("bucket", "change", Bucket.objects.first().pk),
        url("bucketallocation", "change", BucketAllocation.objects.first().pk),
        url("balance", "change", Balance.objects.first().pk),
        url("partner", "change", partner.pk, app="partners"),
        url("partnerprogram", "change", PartnerProgram.objects.first().pk, app="partners"),
    ]
    for page in pages:
        assert admin_client.get(page).status_code == 200, page


@pytest.mark.parametrize(
    ("app", "model_name"),
    [
        ("loyalty", "program"),
        ("loyalty", "currency"),
        ("loyalty", "earningrule"),
        ("loyalty", "member"),
        ("partners", "partner"),
    ],
)
def test_add_pages_render(admin_client, program, app, model_name):
    assert admin_client.get(url(model_name, "add", app=app)).status_code == 200


def test_transaction_page_shows_its_lines_and_entries_with_rule_links(admin_client, history):
    purchase, _ = history

    content = admin_client.get(url("transaction", "change", purchase.pk)).content.decode()

    assert "LATTE" in content
    for entry in purchase.entries.select_related("rule"):
        assert url("earningrule", "change", entry.rule_id) in content
    assert "+120" in content  # 120 PTS and 120 TQP


# --- search and filters --------------------------------------------------------------------


def test_member_search_by_email_and_membership_number(admin_client, program):
    alice = MemberFactory(program=program, email="alice@example.com", membership_number="A-1")
    bob = MemberFactory(program=program, email="bob@example.com", membership_number="B-2")

    by_email = admin_client.get(url("member"), {"q": "alice@example"})
    by_number = admin_client.get(url("member"), {"q": "B-2"})

    assert list(by_email.context["cl"].result_list) == [alice]
    assert list(by_number.context["cl"].result_list) == [bob]


def test_transaction_search_by_external_id_and_member_number(admin_client, history, program):
    purchase, _ = history
    other = MemberFactory(program=program)

    by_id = admin_client.get(url("transaction"), {"q": purchase.external_id})
    by_member = admin_client.get(url("transaction"), {"q": other.membership_number})

    assert list(by_id.context["cl"].result_list) == [purchase]
    assert list(by_member.context["cl"].result_list) == []


def test_transaction_filters(admin_client, history):
    purchase, redemption = history

    response = admin_client.get(url("transaction"), {"type__exact": "redemption"})

    assert list(response.context["cl"].result_list) == [redemption]
    for params in (
        {"subtype": "purchase"},
        {"status__exact": "processed"},
        {"channel__exact": "store"},
    ):
        assert admin_client.get(url("transaction"), params).status_code == 200


def test_member_changelist_of_100_members_costs_a_bounded_number_of_queries(
    admin_client, program, pts, tqp, django_assert_max_num_queries
):
    # given 100 members with balances, a tier group, and stored tiers for half of them
    group = make_group(program, tqp)
    silver = group.tiers.get(code="silver")
    members = MemberFactory.create_batch(100, program=program)
    today = timezone.localdate()
    for member in members:
        Balance.objects.create(member=member, currency=pts, available=7)
    for member in members[:50]:
        MemberTier.objects.create(
            member=member,
            group=group,
            tier=silver,
            valid_from=today,
            valid_until=today,
            period_start=today,
            period_end=today,
        )
    admin_client.get(url("member"))  # warm the session and content types

    # when
    with django_assert_max_num_queries(12):
        response = admin_client.get(url("member"))

    # then: the columns are there without a query per row
    assert len(response.context["cl"].result_list) == 100
    content = response.content.decode()
    assert content.count("7 PTS") == 100
    assert content.count("Silver</span>") == 50 and content.count("Blue</span>") == 50


def test_member_list_shows_tier_points_last_activity_and_filters_by_tier(
    admin_client, program, pts, tqp, base_rules, post
):
    make_group(program, tqp)
    gold, plain = MemberFactory(program=program), MemberFactory(program=program)
    post(gold, amount="1600.00")  # 1600 TQP: gold at once

    listed = admin_client.get(url("member"))
    golds = admin_client.get(url("member"), {"tier": "gold"})
    blues = admin_client.get(url("member"), {"tier": "blue"})

    columns = [h["text"] for h in listed.context["result_headers"]]
    for column in ("tier", "available points", "last activity", "enrolled at"):
        assert column in [str(c).lower() for c in columns], columns
    assert "1600 PTS" in listed.content.decode()
    assert [m.pk for m in golds.context["cl"].result_list] == [gold.pk]
    assert [m.pk for m in blues.context["cl"].result_list] == [plain.pk]


def test_ledger_changelist_of_many_entries_costs_a_bounded_number_of_queries(
    admin_client, program, pts, tqp, base_rules, post, django_assert_max_num_queries
):
    for member in MemberFactory.create_batch(25, program=program):
        post(member, amount="10.00")  # 2 entries each
    admin_client.get(url("ledgerentry"))

    with django_assert_max_num_queries(10):
        response = admin_client.get(url("ledgerentry"))

    assert len(response.context["cl"].result_list) == 50


# --- the member page -----------------------------------------------------------------------


def test_member_page_shows_balances_in_currency_units(admin_client, program, pts, member, post):
    cash = CurrencyFactory(program=program, code="CASH", name="Cashback", decimals=2)
    post(member, "adjustment", points="12.50", points_currency="CASH", reason="goodwill")
    post(member, "adjustment", points="300", points_currency="PTS", reason="goodwill")

    response = admin_client.get(url("member", "change", member.pk))
    content = response.content.decode()

    assert cash.code in content
    assert "12.50" in content  # 1250 smallest units of a 2-decimal currency
    assert re.search(r"<td><strong>PTS</strong> Points</td>\s*<td>300</td>", content)
    assert "goodwill" in content  # recent transactions and ledger entries
    assert "Adjust points" in content


def test_member_page_lists_recent_entries_with_rule_links_and_expiring_points(
    admin_client, program, pts, tqp, base_rules, member, post
):
    pts.expiry_policy, pts.expiry_months = "rolling", 12
    pts.save()
    txn = post(member, amount="40.00").transaction

    content = admin_client.get(url("member", "change", member.pk)).content.decode()

    assert url("earningrule", "change", base_rules[0].pk) in content
    assert url("transaction", "change", txn.pk) in content
    expires_on = txn.entries.get(currency=pts).expires_on
    assert str(expires_on) in content


def empty_inline_forms(client, member) -> dict:
    """The management forms of the member page's inlines (vouchers, promotions, badges), as
    the page renders them: a save posts them back."""
    page = client.get(url("member", "change", member.pk)).content.decode()
    return {
        name: value
        for name, value in re.findall(r'name="([\w-]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)"'
                                      r'[^>]*value="(\d+)"', page)
    }  # fmt: skip


def test_membership_number_and_enrolment_are_read_only_on_change(admin_client, program, member):
    data = {
        "membership_number": "HIJACK",
        "referral_code": "HIJACK",
        "type": "individual",
        "status": "suspended",
        "email": "new@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "attributes": "{}",
        **empty_inline_forms(admin_client, member),
    }

    response = admin_client.post(url("member", "change", member.pk), data)

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.email, member.first_name, member.status) == (
        "new@example.com",
        "Ada",
        "suspended",
    )
    assert member.membership_number != "HIJACK" and member.referral_code != "HIJACK"


def test_adding_a_member_enrols_through_the_service(admin_client, program, pts):
    EarningRuleFactory(
        program=program,
        code="welcome",
        conditions={"subtypes": ["enrollment"]},
        award={"type": "fixed", "currency": "PTS", "points": "200"},
    )

    response = admin_client.post(
        url("member", "add"),
        {
            "program": program.pk,
            "membership_number": "",
            "type": "individual",
            "email": "new@example.com",
            "first_name": "New",
            "enrollment_channel": "store",
            "attributes": "{}",
        },
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    member = Member.objects.get(email="new@example.com")
    assert member.membership_number and member.referral_code
    txn = Transaction.objects.get(member=member)
    assert (txn.subtype, txn.actor) == ("enrollment", "admin")
    assert available(member) == 200


def test_enrolment_refused_by_the_service_shows_why_and_writes_nothing(admin_client, program):
    response = admin_client.post(
        url("member", "add"),
        {
            "program": program.pk,
            "type": "individual",
            "email": "new@example.com",
            "referrer_code": "NOSUCHCODE",
            "attributes": "{}",
        },
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "Unknown referral code." in content
    assert "new@example.com" in content  # the input is kept
    assert not Member.objects.filter(email="new@example.com").exists()


# --- manual adjustments --------------------------------------------------------------------


def adjust(client, member, points, currency, reason="goodwill", token=None):
    return client.post(
        url("member", "adjust", member.pk),
        {
            "token": token or str(uuid.uuid4()),
            "currency": currency.pk,
            "points": str(points),
            "reason": reason,
        },
    )


def test_adjust_points_page_offers_the_program_currencies(admin_client, program, pts, tqp, member):
    response = admin_client.get(url("member", "adjust", member.pk))

    assert response.status_code == 200
    assert set(response.context["form"].fields["currency"].queryset) == {pts, tqp}


def test_adjustment_credit_and_debit_change_the_balance(admin_client, program, pts, member):
    credit = adjust(admin_client, member, 150, pts, reason="compensation for a late delivery")
    debit = adjust(admin_client, member, -40, pts, reason="correction")

    assert credit.status_code == debit.status_code == 302
    assert credit.url == url("member", "change", member.pk)
    assert available(member) == 110
    txns = Transaction.objects.filter(member=member, type="adjustment").order_by("id")
    assert [t.points for t in txns] == [150, -40]
    assert all(t.external_id.startswith("admin-adjust:") and t.actor == "admin" for t in txns)
    assert txns[0].reason == "compensation for a late delivery"
    history_page = admin_client.get(url("member", "history", member.pk)).content.decode()
    assert "compensation for a late delivery" in history_page  # the admin's audit history


def test_adjustment_in_a_decimal_currency_uses_currency_units(admin_client, program, member):
    cash = CurrencyFactory(program=program, code="CASH", decimals=2)

    adjust(admin_client, member, "12.50", cash)

    assert Transaction.objects.get(member=member).points == 1250
    assert available(member, "CASH") == Decimal("12.50")


def test_adjustment_without_a_reason_is_refused(admin_client, program, pts, member):
    response = adjust(admin_client, member, 100, pts, reason="  ")

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Transaction.objects.exists()


def test_overdraft_is_refused_with_the_message_and_nothing_written(
    admin_client, program, pts, member
):
    adjust(admin_client, member, 100, pts)
    entries, txns = LedgerEntry.objects.count(), Transaction.objects.count()

    response = adjust(admin_client, member, -500, pts)

    assert response.status_code == 200
    message = "Cannot debit 500 PTS: only 100 available."
    assert message in messages_of(response)
    assert message in response.content.decode()
    assert (LedgerEntry.objects.count(), Transaction.objects.count()) == (entries, txns)
    assert available(member) == 100


def test_too_many_decimals_is_refused_by_the_service(admin_client, program, pts, member):
    response = adjust(admin_client, member, "1.5", pts)

    assert response.status_code == 200
    assert "PTS has 0 decimals." in messages_of(response)
    assert not Transaction.objects.exists()


def test_submitting_the_same_adjustment_form_twice_posts_once(admin_client, program, pts, member):
    token = str(uuid.uuid4())

    adjust(admin_client, member, 50, pts, token=token)
    second = adjust(admin_client, member, 50, pts, token=token)

    assert second.status_code == 302
    assert Transaction.objects.filter(member=member).count() == 1
    assert available(member) == 50


def test_adjust_action_opens_the_form_and_posts_for_each_selected_member(
    admin_client, program, pts
):
    first, second = MemberFactory.create_batch(2, program=program)

    one = admin_client.post(
        url("member"), {"action": "adjust_points", "_selected_action": [first.pk]}
    )
    many = admin_client.post(
        url("member"), {"action": "adjust_points", "_selected_action": [first.pk, second.pk]}
    )
    assert one.url == url("member", "adjust", first.pk)
    form_page = admin_client.get(many.url)
    assert form_page.status_code == 200
    response = admin_client.post(
        many.url,
        {"token": str(uuid.uuid4()), "currency": pts.pk, "points": "25", "reason": "outage"},
    )

    assert response.status_code == 302
    assert (available(first), available(second)) == (25, 25)


def test_bulk_adjustment_is_all_or_nothing(admin_client, program, pts, post):
    rich, poor = MemberFactory.create_batch(2, program=program)
    post(rich, "adjustment", points="100", points_currency="PTS", reason="seed")

    response = admin_client.post(
        url("member", "adjust_many") + f"?ids={rich.pk},{poor.pk}",
        {"token": str(uuid.uuid4()), "currency": pts.pk, "points": "-10", "reason": "fix"},
    )

    assert response.status_code == 200
    assert any("Cannot debit 10 PTS" in m for m in messages_of(response))
    assert (available(rich), available(poor)) == (100, 0)


def test_adjusting_needs_the_add_transaction_permission(client, program, pts, member):
    agent = User.objects.create_user("agent", password="pw", is_staff=True)
    agent.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(agent)

    assert client.get(url("member", "adjust", member.pk)).status_code == 403
    assert adjust(client, member, 10, pts).status_code == 403
    assert "Adjust points" not in client.get(url("member", "change", member.pk)).content.decode()

    agent.user_permissions.add(Permission.objects.get(codename="add_transaction"))
    agent = User.objects.get(pk=agent.pk)  # drop the permission cache
    client.force_login(agent)
    assert client.get(url("member", "adjust", member.pk)).status_code == 200
    assert adjust(client, member, 10, pts).status_code == 302
    assert Transaction.objects.get(member=member).actor == "agent"


# --- merge and erasure ---------------------------------------------------------------------


def test_erase_action_asks_for_confirmation_then_erases(admin_client, program, member):
    selection = {"action": "erase_personal_data", "_selected_action": [member.pk]}

    confirm_page = admin_client.post(url("member"), selection)
    member.refresh_from_db()
    assert confirm_page.status_code == 200 and member.erased_at is None

    admin_client.post(url("member"), {**selection, "confirm": "yes"})
    member.refresh_from_db()
    assert member.erased_at is not None
    assert (member.email, member.status) == ("", "closed")


def test_merge_action_moves_points_into_the_chosen_survivor(admin_client, program, pts, post):
    survivor, duplicate = MemberFactory.create_batch(2, program=program)
    post(survivor, "adjustment", points="10", points_currency="PTS", reason="seed")
    post(duplicate, "adjustment", points="30", points_currency="PTS", reason="seed")
    selection = {"action": "merge_members", "_selected_action": [survivor.pk, duplicate.pk]}

    assert admin_client.post(url("member"), selection).status_code == 200
    response = admin_client.post(url("member"), {**selection, "survivor": survivor.pk})

    assert response.status_code == 302
    duplicate.refresh_from_db()
    assert duplicate.merged_into == survivor
    assert (available(survivor), available(duplicate)) == (40, 0)


# --- the journal and the ledger are read-only ----------------------------------------------


@pytest.mark.parametrize(
    "model_name", ["ledgerentry", "transaction", "bucket", "bucketallocation", "balance"]
)
def test_history_cannot_be_added_changed_or_deleted_even_by_a_superuser(
    admin_client, history, model_name
):
    model = {
        "ledgerentry": LedgerEntry,
        "transaction": Transaction,
        "bucket": Bucket,
        "bucketallocation": BucketAllocation,
        "balance": Balance,
    }[model_name]
    obj = model.objects.order_by("pk").first()
    before = model.objects.count()

    change_page = admin_client.get(url(model_name, "change", obj.pk))
    changelist = admin_client.get(url(model_name))

    assert admin_client.get(url(model_name, "add")).status_code == 403
    assert change_page.status_code == 200
    assert 'name="_save"' not in change_page.content.decode()
    assert change_page.context["has_change_permission"] is False
    action_form = changelist.context["action_form"]  # None: no action is offered at all
    assert action_form is None or "delete_selected" not in dict(
        action_form.fields["action"].choices
    )
    assert admin_client.get(url(model_name, "delete", obj.pk)).status_code == 403
    assert admin_client.post(url(model_name, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.post(url(model_name, "change", obj.pk), {}).status_code == 403
    bulk_delete = admin_client.post(
        url(model_name), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    )
    assert bulk_delete.status_code in (200, 302)
    assert model.objects.count() == before


def test_members_are_never_deleted_in_the_admin(admin_client, member):
    assert admin_client.post(url("member", "delete", member.pk), {"post": "yes"}).status_code == 403
    assert Member.objects.filter(pk=member.pk).exists()


# --- configuration -------------------------------------------------------------------------


def test_earning_rule_list_shows_award_type_and_currency(admin_client, program, pts, base_rules):
    response = admin_client.get(url("earningrule"))

    content = response.content.decode()
    assert "per_amount" in content and "always" in content


def test_earning_rule_with_an_invalid_award_is_refused_on_its_field(admin_client, program, pts):
    response = admin_client.post(
        url("earningrule", "add"),
        {
            "program": program.pk,
            "code": "bad",
            "name": "Bad",
            "priority": "0",
            "award_type": "fixed",
            "award_currency": "PTS",
            "award_rounding": "down",
        },
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["award_points"] == ["Required for a fixed award."]
    assert not EarningRule.objects.filter(code="bad").exists()


def test_currency_decimals_are_fixed_once_it_exists(admin_client, program, pts):
    response = admin_client.post(
        url("currency", "change", pts.pk),
        {
            "code": "PTS",
            "name": "Points",
            "kind": "non_qualifying",
            "decimals": "2",
            "point_value": "0.01",
            "redeemable": "on",
            "allow_debt": "on",
            "escrow_days": "0",
            "expiry_policy": "none",
            "expiry_round_to": "none",
        },
    )

    assert response.status_code == 302
    pts.refresh_from_db()
    assert (pts.decimals, pts.point_value) == (0, Decimal("0.01"))


def test_saving_a_partner_keeps_the_prepaid_balance_written_meanwhile(
    admin_client, program, partner
):
    terms = PartnerProgram.objects.get(partner=partner)
    assert admin_client.get(url("partner", "change", partner.pk, app="partners")).status_code == 200
    PartnerProgram.objects.filter(pk=terms.pk).update(prepaid_points_balance=400)

    response = admin_client.post(
        url("partner", "change", partner.pk, app="partners"),
        {
            "code": partner.code,
            "name": "Cafe",
            "kind": "retailer",
            "status": "active",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": terms.pk,
            "memberships-0-partner": partner.pk,
            "memberships-0-program": program.pk,
            "memberships-0-fee_per_point_issued": "0.010000",
            "memberships-0-reimbursement_per_point_redeemed": "0",
            "memberships-0-billing": "prepaid",
            "memberships-0-prepaid_alert_threshold": "50",
            "products-TOTAL_FORMS": "1",
            "products-INITIAL_FORMS": "0",
            "products-0-program": program.pk,
            "products-0-sku": "LATTE",
            "products-0-name": "Latte",
            "categories-TOTAL_FORMS": "0",
            "categories-INITIAL_FORMS": "0",
            "users-TOTAL_FORMS": "0",
            "users-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    terms.refresh_from_db()
    assert (terms.billing, terms.fee_per_point_issued) == ("prepaid", Decimal("0.01"))
    assert terms.prepaid_points_balance == 400
    assert partner.products.get().sku == "LATTE"


def test_program_page_adds_a_currency_and_lists_its_rules_read_only(
    admin_client, program, pts, base_rules
):
    data = {
        "code": program.code,
        "name": program.name,
        "status": "active",
        "timezone": "Europe/Warsaw",
        "currency": "EUR",
        "currencies-TOTAL_FORMS": "2",
        "currencies-INITIAL_FORMS": "1",
        "currencies-0-id": pts.pk,
        "currencies-0-program": program.pk,
        "currencies-0-code": "PTS",
        "currencies-0-name": "Points",
        "currencies-0-kind": "non_qualifying",
        "currencies-0-point_value": "0.01",
        "currencies-0-redeemable": "on",
        "currencies-0-escrow_days": "0",
        "currencies-0-expiry_policy": "none",
        "currencies-0-expiry_round_to": "none",
        "currencies-1-code": "CASH",
        "currencies-1-name": "Cashback",
        "currencies-1-kind": "non_qualifying",
        "currencies-1-decimals": "2",
        "currencies-1-point_value": "1",
        "currencies-1-redeemable": "on",
        "currencies-1-allow_debt": "on",
        "currencies-1-escrow_days": "0",
        "currencies-1-expiry_policy": "none",
        "currencies-1-expiry_round_to": "none",
        # A rule smuggled into the read-only inline is ignored: rules start as drafts on
        # their own page.
        "earning_rules-TOTAL_FORMS": "1",
        "earning_rules-INITIAL_FORMS": "0",
        "earning_rules-0-code": "sneaky",
    }
    page = url("program", "change", program.pk)

    shown = admin_client.get(page)
    saved = admin_client.post(page, data)

    content = shown.content.decode()
    for rule in base_rules:
        assert url("earningrule", "change", rule.pk) in content
    assert 'name="earning_rules-0-code"' not in content
    assert saved.status_code == 302, saved.context and saved.context["errors"]
    assert program.currencies.get(code="CASH").decimals == 2
    assert set(program.earning_rules.values_list("code", flat=True)) == {"base", "base-tqp"}


def test_transaction_list_shows_the_points_each_transaction_wrote(admin_client, history):
    purchase, redemption = history

    response = admin_client.get(url("transaction"))

    rows = {t.pk: t._ledger_points for t in response.context["cl"].result_list}
    assert [(p, c.code) for p, c in rows[purchase.pk]] == [(120, "PTS"), (120, "TQP")]
    assert [(p, c.code) for p, c in rows[redemption.pk]] == [(-20, "PTS")]
    content = response.content.decode()
    assert "+120 PTS, +120 TQP" in content and "-20 PTS" in content


def test_transaction_changelist_of_100_transactions_costs_a_bounded_number_of_queries(
    admin_client, program, pts, tqp, base_rules, post, django_assert_max_num_queries
):
    for member in MemberFactory.create_batch(50, program=program):
        post(member, amount="10.00")
        post(member, amount="5.00")
    admin_client.get(url("transaction"))

    with django_assert_max_num_queries(12):
        response = admin_client.get(url("transaction"))

    assert len(response.context["cl"].result_list) == 100


# --- the index -----------------------------------------------------------------------------


def test_index_puts_the_working_screens_first_and_folds_the_ledger_internals(admin_client):
    response = admin_client.get(reverse("admin:index"))

    content = response.content.decode()
    working = content.index("Working screens")
    internals = content.index('<details class="tessera-internals"')
    for screen in ("member", "transaction", "earningrule", "tiergroup"):
        assert working < content.index(url(screen)) < internals, screen
    for screen, app in (
        ("partner", "partners"),
        ("importjob", "loyalty"),
        ("promotion", "promotions"),
        ("voucherdefinition", "vouchers"),
        ("segment", "loyalty"),
        ("approvalrequest", "loyalty"),
    ):
        assert working < content.index(url(screen, app=app)) < internals, screen
    assert working < content.index(reverse("admin:django_celery_beat_periodictask_changelist"))
    for internal in ("ledgerentry", "bucket", "bucketallocation", "transactionline", "balance"):
        assert content.index(url(internal)) > internals, internal
    assert working < content.index(url("program")) < internals  # configuration in between


def test_index_shows_a_limited_user_only_what_they_may_open(client, db):
    user = User.objects.create_user("agent", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(user)

    content = client.get(reverse("admin:index")).content.decode()

    assert "Working screens" in content and url("member") in content
    assert "tessera-internals" not in content and url("transaction") not in content


def test_member_page_links_to_its_ledger_internals(admin_client, history, member):
    content = admin_client.get(url("member", "change", member.pk)).content.decode()

    for internal in ("ledgerentry", "bucket", "balance"):
        link = f"{url(internal)}?member__id__exact={member.pk}"
        assert link in content, internal
        assert admin_client.get(link).context["cl"].result_count >= 1, internal


def test_attributes_stored_before_bounds_never_break_the_member_pages(admin_client, member):
    deep = '{"a": ' * 200 + "{}" + "}" * 200  # as an early version could store them
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_member SET attributes = %s::jsonb WHERE id = %s", [deep, member.pk]
        )

    page = admin_client.get(url("member", "change", member.pk))

    assert page.status_code == 200
    assert "nested deeper than 32 levels" in page.content.decode()
    assert admin_client.get(url("member")).status_code == 200

"""Earning rules in the admin and their service: a rule is written through a form with a field
per condition and award setting (never raw JSON), starts as a draft, is simulated on a sample
transaction and replayed over a past window from its page, then activated; refusals land on
the field that holds the mistake and write nothing."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from loyalty import dates
from loyalty.exceptions import InvalidEarningRule, InvalidRuleStatusChange, ValidationFailed
from loyalty.models import EarningRule, LedgerEntry, Transaction
from loyalty.services.earning_rules import (
    earning_rule_activate,
    earning_rule_create,
    earning_rule_deactivate,
    earning_rule_simulate,
    earning_rule_update,
)
from loyalty.services.requests import LineRequest, TransactionRequest
from tests.factories import CurrencyFactory, EarningRuleFactory, MemberFactory, ProgramFactory

UTC = dt.UTC
PER_EURO = {"type": "per_amount", "currency": "PTS", "points": "1", "per": "1.00"}


def url(action: str, *args) -> str:
    return reverse(f"admin:loyalty_earningrule_{action}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def rule_form(program, **fields) -> dict:
    """The add form as a manager fills it: a drinks multiplier, unless told otherwise."""
    return {
        "program": program.pk,
        "code": "drinks-x2",
        "name": "Double points on drinks",
        "description": "",
        "subtypes": ["purchase"],
        "categories": "drinks",
        "award_type": "multiplier",
        "award_currency": "PTS",
        "award_factor": "2",
        "award_rounding": "down",
        "priority": "5",
        **fields,
    }


def sample(member, **fields) -> dict:
    """The simulation form: a purchase with one line."""
    occurred = timezone.localtime(timezone=dates.zone(member.program.timezone))
    occurred -= dt.timedelta(minutes=5)
    return {
        "member": member.membership_number,
        "subtype": "purchase",
        "amount": "",
        "channel": "store",
        "partner": "",
        "event": "",
        "occurred_at": occurred.strftime("%Y-%m-%d %H:%M"),
        "lines-TOTAL_FORMS": "3",
        "lines-INITIAL_FORMS": "0",
        "lines-0-sku": "LATTE",
        "lines-0-category": "drinks",
        "lines-0-quantity": "2",
        "lines-0-unit_price": "5.00",
        **fields,
    }


# --- the service -----------------------------------------------------------------------------


def test_a_new_rule_is_a_draft_that_posting_ignores(program, pts, base_rules, member, post):
    rule = earning_rule_create(
        program=program, code="bonus", name="Bonus", award={**PER_EURO, "points": "5"}
    )

    result = post(member, amount="10.00")

    assert rule.status == EarningRule.Status.DRAFT
    assert not LedgerEntry.objects.filter(transaction=result.transaction, rule=rule).exists()


def test_a_rule_the_engine_cannot_run_is_refused_naming_the_field(program, pts):
    with pytest.raises(InvalidEarningRule) as refused:
        earning_rule_create(
            program=program,
            code="bad",
            name="Bad",
            conditions={"weekdays": ["funday"]},
            award=PER_EURO,
        )

    assert refused.value.code == "invalid_earning_rule"
    assert "conditions.weekdays" in refused.value.fields
    assert not EarningRule.objects.filter(code="bad").exists()


def test_an_award_in_another_programs_currency_is_refused(program, pts):
    CurrencyFactory(program=ProgramFactory(code="other"), code="MILES")

    with pytest.raises(InvalidEarningRule) as refused:
        earning_rule_create(
            program=program, code="miles", name="Miles", award={**PER_EURO, "currency": "MILES"}
        )

    assert list(refused.value.fields) == ["award.currency"]


def test_a_code_the_program_uses_is_refused_on_the_code(program, pts, base_rules):
    with pytest.raises(InvalidEarningRule) as refused:
        earning_rule_create(program=program, code="base", name="Again", award=PER_EURO)

    assert list(refused.value.fields) == ["code"]


def test_a_window_ending_before_it_starts_is_refused(program, pts):
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)

    with pytest.raises(InvalidEarningRule) as refused:
        earning_rule_create(
            program=program,
            code="late",
            name="Late",
            award=PER_EURO,
            active_from=start,
            active_to=start - dt.timedelta(days=1),
        )

    assert list(refused.value.fields) == ["active_to"]


def test_an_edit_keeps_the_status_and_refuses_the_status_itself(program, pts, base_rules):
    rule = base_rules[0]

    earning_rule_update(rule=rule, name="Base points", award={**PER_EURO, "points": "2"})
    with pytest.raises(ValidationFailed):
        earning_rule_update(rule=rule, status="inactive")

    rule.refresh_from_db()
    assert (rule.name, rule.award["points"], rule.status) == ("Base points", "2", "active")


def test_an_edit_the_engine_cannot_run_writes_nothing(program, pts, base_rules):
    rule = base_rules[0]

    with pytest.raises(InvalidEarningRule):
        earning_rule_update(rule=rule, name="Broken", award={"type": "fixed", "currency": "PTS"})

    rule.refresh_from_db()
    assert rule.name == "base" and rule.award == {**PER_EURO, "rounding": "down"}


def test_activating_lets_the_rule_earn_and_deactivating_stops_it(program, pts, member, post):
    rule = earning_rule_create(program=program, code="bonus", name="Bonus", award=PER_EURO)

    earning_rule_activate(rule=rule, actor="manager")
    earned = post(member, amount="10.00").transaction
    earning_rule_deactivate(rule=rule, actor="manager")
    ignored = post(member, amount="10.00").transaction

    assert LedgerEntry.objects.filter(transaction=earned, rule=rule).get().points == 10
    assert not LedgerEntry.objects.filter(transaction=ignored).exists()
    assert EarningRule.objects.get(pk=rule.pk).status == EarningRule.Status.INACTIVE


def test_a_rule_whose_window_has_ended_cannot_be_activated(program, pts):
    rule = earning_rule_create(
        program=program,
        code="old",
        name="Old",
        award=PER_EURO,
        active_to=timezone.now() - dt.timedelta(days=1),
    )

    with pytest.raises(InvalidRuleStatusChange):
        earning_rule_activate(rule=rule)

    assert EarningRule.objects.get(pk=rule.pk).status == EarningRule.Status.DRAFT


def test_simulating_a_draft_evaluates_it_as_if_active_and_writes_nothing(
    program, pts, tqp, base_rules, member
):
    draft = earning_rule_create(
        program=program,
        code="drinks-x2",
        name="Drinks",
        conditions={"categories": ["drinks"]},
        award={"type": "multiplier", "currency": "PTS", "factor": "2"},
    )
    request = TransactionRequest(
        external_id="sample-1",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        occurred_at=timezone.now() - dt.timedelta(minutes=1),
        lines=(
            LineRequest(category="drinks", quantity=Decimal("1"), unit_price=Decimal("7.00")),
            LineRequest(category="food", quantity=Decimal("1"), unit_price=Decimal("3.00")),
        ),
    )

    result = earning_rule_simulate(rule=draft, request=request)

    awards = {a.rule_code: a.points for a in result.awards}
    assert awards == {"base": 10, "base-tqp": 10, "drinks-x2": 7}
    assert result.totals == {"PTS": 17, "TQP": 10}
    assert not Transaction.objects.filter(external_id="sample-1").exists()
    assert EarningRule.objects.get(pk=draft.pk).status == EarningRule.Status.DRAFT


def test_simulating_says_why_a_rule_does_not_fire(program, pts, base_rules, member):
    draft = earning_rule_create(
        program=program,
        code="weekend",
        name="Weekend",
        conditions={"min_amount": "50"},
        award=PER_EURO,
    )
    request = TransactionRequest(
        external_id="sample-2",
        member=member.membership_number,
        type="accrual",
        subtype="purchase",
        amount=Decimal("10.00"),
        occurred_at=timezone.now() - dt.timedelta(minutes=1),
    )

    result = earning_rule_simulate(rule=draft, request=request)

    [why] = [n.reason for n in result.not_fired if n.rule_code == "weekend"]
    assert why == "amount 10.00 is under the minimum 50"


def test_simulating_an_unknown_member_returns_the_posts_refusal(program, pts, base_rules):
    draft = earning_rule_create(program=program, code="bonus", name="Bonus", award=PER_EURO)
    request = TransactionRequest(
        external_id="sample-3",
        member="NOBODY",
        type="accrual",
        subtype="purchase",
        amount=Decimal("10.00"),
        occurred_at=timezone.now() - dt.timedelta(minutes=1),
    )

    result = earning_rule_simulate(rule=draft, request=request)

    assert result.refusal is not None and result.refusal.code == "unknown_member"
    assert result.awards == []


# --- the form --------------------------------------------------------------------------------


def test_the_form_builds_the_definition_from_a_field_per_condition_and_award_setting(
    admin_client, program, pts
):
    response = admin_client.post(
        url("add"),
        rule_form(
            program,
            code="everything",
            subtypes=["purchase", "engagement"],
            events="review_posted, app_login",
            channels=["store", "app"],
            partners="cafe",
            skus="LATTE\nMOCHA",
            categories="",
            min_amount="12.50",
            tiers="gold",
            segments="vip",
            weekdays=["sat", "sun"],
            attributes='newsletter=true\nplan="gold"\ncity=Warsaw',
            award_type="per_amount",
            award_points="0.5",
            award_per="1.00",
            award_rounding="half_up",
            award_factor="",
            max_points_per_transaction="100",
            max_per_member_per_day="1",
            max_per_member_per_month="3",
        ),
    )

    assert response.status_code == 302
    rule = EarningRule.objects.get(code="everything")
    assert rule.status == EarningRule.Status.DRAFT
    assert rule.conditions == {
        "subtypes": ["purchase", "engagement"],
        "events": ["review_posted", "app_login"],
        "channels": ["store", "app"],
        "partners": ["cafe"],
        "skus": ["LATTE", "MOCHA"],
        "min_amount": "12.50",
        "tiers": ["gold"],
        "segments": ["vip"],
        "weekdays": ["sat", "sun"],
        "attributes": {"newsletter": True, "plan": "gold", "city": "Warsaw"},
    }
    assert rule.award == {
        "type": "per_amount",
        "currency": "PTS",
        "points": "0.5",
        "per": "1.00",
        "rounding": "half_up",
        "max_points_per_transaction": "100",
        "max_per_member_per_day": 1,
        "max_per_member_per_month": 3,
    }
    assert response["Location"] == url("change", rule.pk)


def test_the_change_form_shows_the_stored_definition_in_its_fields(
    admin_client, program, pts, base_rules
):
    rule = EarningRuleFactory(
        program=program,
        code="reviews",
        conditions={"subtypes": ["engagement"], "events": ["review_posted"], "weekdays": [6]},
        award={"type": "fixed", "currency": "PTS", "points": "50", "max_per_member_per_month": 3},
    )

    form = admin_client.get(url("change", rule.pk)).context["adminform"].form

    assert form.initial["subtypes"] == ["engagement"]
    assert 'value="review_posted"' in str(form["events"])
    assert form.initial["weekdays"] == ["sat"]
    assert (form.initial["award_type"], form.initial["award_points"]) == ("fixed", "50")
    assert form.initial["max_per_member_per_month"] == 3


def test_saving_the_change_form_unchanged_keeps_the_definition(
    admin_client, program, pts, base_rules
):
    rule = base_rules[0]
    form = admin_client.get(url("change", rule.pk)).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    for name in ("active_from", "active_to"):
        data.pop(name, None)

    response = admin_client.post(url("change", rule.pk), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert rule.award == {**PER_EURO, "rounding": "down"}
    assert rule.conditions == {"subtypes": ["purchase"]}
    assert rule.status == EarningRule.Status.ACTIVE


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"award_factor": ""}, "award_factor", "Required for a multiplier award."),
        (
            {"award_type": "per_amount", "award_points": "1", "award_per": "0"},
            "award_per",
            "must be a positive number",
        ),
        ({"attributes": "no equals sign"}, "attributes", "Line 1: write key=value."),
        ({"code": "base"}, "code", "already exists"),
        ({"award_currency": "EUR"}, "award_currency", "Select a valid choice."),
    ],
)
def test_a_mistake_is_shown_on_its_field_and_nothing_is_written(
    admin_client, program, pts, base_rules, fields, field, message
):
    response = admin_client.post(url("add"), rule_form(program, **fields))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors.get(field, [])), errors
    assert EarningRule.objects.filter(program=program).count() == 2


def test_a_refusal_of_the_service_comes_back_on_the_field_with_the_input(
    admin_client, program, pts
):
    # The form does not compare the two dates; the service does, and names the field.
    data = rule_form(
        program,
        active_from_0="2026-03-01",
        active_from_1="00:00",
        active_to_0="2026-02-01",
        active_to_1="00:00",
    )

    response = admin_client.post(url("add"), data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["active_to"] == ["The active window must end after it starts."]
    assert form["categories"].value() == "drinks"
    assert not EarningRule.objects.filter(code="drinks-x2").exists()


# --- the rule's page: simulate, what-if, activate --------------------------------------------


@pytest.fixture
def draft(program, pts, tqp, base_rules):
    return earning_rule_create(
        program=program,
        code="drinks-x2",
        name="Double points on drinks",
        conditions={"categories": ["drinks"]},
        award={"type": "multiplier", "currency": "PTS", "factor": "2"},
        priority=5,
    )


def test_the_rule_page_offers_simulate_what_if_and_activate(admin_client, draft):
    content = admin_client.get(url("change", draft.pk)).content.decode()

    assert url("simulate", draft.pk) in content
    assert url("what_if", draft.pk) in content
    assert f'action="{url("activate", draft.pk)}"' in content
    assert "Status: <strong>Draft</strong>" in content


def test_the_simulate_page_shows_the_breakdown_with_the_draft_and_why_not(
    admin_client, draft, member
):
    page = admin_client.get(url("simulate", draft.pk))
    response = admin_client.post(url("simulate", draft.pk), sample(member))

    assert page.status_code == 200
    result = response.context["result"]
    assert {a.rule_code: a.points for a in result.awards} == {
        "base": 10,
        "base-tqp": 10,
        "drinks-x2": 10,
    }
    content = response.content.decode()
    assert "This rule fires:" in content and "10 PTS" in content
    assert not Transaction.objects.exists()


def test_the_simulate_page_says_why_the_draft_does_not_fire(admin_client, draft, member):
    response = admin_client.post(
        url("simulate", draft.pk), sample(member, **{"lines-0-category": "food"})
    )

    content = response.content.decode()
    assert "This rule does not fire:" in content
    assert "no line matches {&#x27;categories&#x27;: [&#x27;drinks&#x27;]}" in content


def test_the_simulate_page_shows_a_refusal(admin_client, draft):
    response = admin_client.post(
        url("simulate", draft.pk), sample(MemberFactory.build(membership_number="NOBODY"))
    )

    assert response.status_code == 200
    assert "unknown_member" in response.content.decode()


def test_the_what_if_page_reports_cost_members_and_money_value(
    admin_client, program, pts, draft, post
):
    pts.point_value = Decimal("0.01")
    pts.save()
    first, second = MemberFactory.create_batch(2, program=program)
    drinks = [{"category": "drinks", "quantity": Decimal("1"), "unit_price": Decimal("10.00")}]
    day = timezone.now() - dt.timedelta(days=3)
    for member in (first, first, second):
        post(member, lines=drinks, occurred_at=day)
    post(second, lines=[{**drinks[0], "category": "food"}], occurred_at=day)
    local_day = timezone.localdate(day)

    response = admin_client.get(
        url("what_if", draft.pk),
        {
            "start": (local_day - dt.timedelta(days=1)).isoformat(),
            "end": (local_day + dt.timedelta(days=1)).isoformat(),
            "include_existing": "on",
        },
    )

    result = response.context["result"]
    assert (result.transactions_scanned, result.transactions_matched) == (4, 3)
    assert result.members_reached == 2
    assert result.points == {"PTS": Decimal("30")}
    assert result.money_value == Decimal("0.30")
    assert "0.30" in response.content.decode()


def test_the_what_if_page_refuses_a_range_ending_before_it_starts(admin_client, draft):
    response = admin_client.get(
        url("what_if", draft.pk), {"start": "2026-02-10", "end": "2026-02-01"}
    )

    assert response.context["result"] is None
    assert response.context["form"].errors["end"] == ["The last day comes before the first."]


def test_activate_and_deactivate_are_buttons_that_post(admin_client, draft):
    assert admin_client.get(url("activate", draft.pk)).status_code == 405

    activated = admin_client.post(url("activate", draft.pk))
    draft.refresh_from_db()
    status_after_activate = draft.status
    admin_client.post(url("deactivate", draft.pk))
    draft.refresh_from_db()

    assert activated.status_code == 302 and activated["Location"] == url("change", draft.pk)
    assert status_after_activate == EarningRule.Status.ACTIVE
    assert draft.status == EarningRule.Status.INACTIVE


def test_a_refused_activation_is_shown_and_changes_nothing(admin_client, program, pts):
    rule = earning_rule_create(
        program=program,
        code="old",
        name="Old",
        award=PER_EURO,
        active_to=timezone.now() - dt.timedelta(days=1),
    )

    response = admin_client.post(url("activate", rule.pk), follow=True)

    assert any("move its active window" in m for m in messages_of(response))
    rule.refresh_from_db()
    assert rule.status == EarningRule.Status.DRAFT


def test_a_viewer_may_simulate_but_not_activate(client, draft, member):
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_earningrule"))
    client.force_login(viewer)

    simulated = client.post(url("simulate", draft.pk), sample(member))
    refused = client.post(url("activate", draft.pk))

    assert simulated.status_code == 200 and simulated.context["result"] is not None
    assert 'id="tessera-activate"' not in simulated.content.decode()
    assert refused.status_code == 403
    draft.refresh_from_db()
    assert draft.status == EarningRule.Status.DRAFT


def test_the_sample_date_is_read_in_the_programs_timezone(admin_client, program, pts, member):
    # given a Saturday rule and a sample typed as Saturday 23:30, which read as UTC would be
    # Sunday 00:30 in Warsaw
    saturday = earning_rule_create(
        program=program,
        code="saturday",
        name="Saturday",
        conditions={"weekdays": ["sat"]},
        award={"type": "fixed", "currency": "PTS", "points": "5"},
    )

    response = admin_client.post(
        url("simulate", saturday.pk), sample(member, occurred_at="2025-11-29 23:30")
    )

    # then it is a Saturday purchase, as the program's members see it
    assert {a.rule_code: a.points for a in response.context["result"].awards} == {"saturday": 5}

"""The tiers in the admin: a program manager configures a tier group with its tiers inline and
sees how many members hold each; the member page shows tiers, benefits, tier history and
member events; "Set tier" goes through `member_tier_set`; history and events are read-only."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Benefit, MemberEvent, MemberTier, Tier, TierGroup, TierHistory
from tests.factories import MemberFactory
from tests.loyalty.test_tiers import make_group


def url(model_name: str, action: str = "changelist", *args) -> str:
    return reverse(f"admin:loyalty_{model_name}_{action}", args=args)


@pytest.fixture
def status(program, tqp):
    group = make_group(program, tqp)
    benefit = Benefit.objects.create(
        program=program, code="free-shipping", name="Free shipping", kind="free_shipping"
    )
    group.tiers.get(code="silver").benefits.set([benefit])
    return group


@pytest.fixture
def silver(status, member, base_rules, post):
    now = timezone.now()
    post(member, amount=600, occurred_at=now, now=now)
    return member


def test_tier_pages_render(admin_client, silver, status):
    history = TierHistory.objects.get(member=silver)
    pages = [
        url("tiergroup"),
        url("tiergroup", "change", status.pk),
        url("tiergroup", "add"),
        url("benefit"),
        url("benefit", "change", Benefit.objects.get().pk),
        url("benefit", "add"),
        url("membertier"),
        url("membertier", "change", MemberTier.objects.get(member=silver).pk),
        url("tierhistory"),
        url("tierhistory", "change", history.pk),
        url("memberevent"),
        url("memberevent", "change", MemberEvent.objects.filter(member=silver).first().pk),
        url("memberevent") + "?delivered=no",
        url("member", "set_tier", silver.pk),
    ]
    for page in pages:
        assert admin_client.get(page).status_code == 200, page


def test_tier_group_shows_members_per_tier(admin_client, silver, status, program):
    MemberFactory.create_batch(2, program=program)  # no stored tier: blue

    changelist = admin_client.get(url("tiergroup")).content.decode()
    change = admin_client.get(url("tiergroup", "change", status.pk)).content.decode()

    assert "Blue: 2 · Silver: 1 · Gold: 0" in changelist
    silver_tier = status.tiers.get(code="silver")
    assert f"tier__id__exact={silver_tier.pk}" in change
    assert "Blue: 2 · Silver: 1 · Gold: 0" in change


def _inline_post(group, tiers, **fields):
    data = {
        "program": group.program_id,
        "code": group.code,
        "name": group.name,
        "description": "",
        "qualifying_currency": group.qualifying_currency_id,
        "model": "fixed",
        "period_start": "01-01",
        "tier_duration_months": "12",
        "extend_expiration": "qualifying_reset_date",
        "downgrade": "one_step",
        "tiers-TOTAL_FORMS": str(len(tiers)),
        "tiers-INITIAL_FORMS": str(sum(1 for t in tiers if t.get("id"))),
        "tiers-MIN_NUM_FORMS": "0",
        "tiers-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for i, tier in enumerate(tiers):
        for key, value in tier.items():
            data[f"tiers-{i}-{key}"] = value
        data[f"tiers-{i}-group"] = group.pk
    return data


def test_manager_edits_a_tier_group_and_its_tiers_inline(admin_client, status):
    tiers = [
        {"id": t.pk, "code": t.code, "name": t.name, "threshold": t.threshold, "colour": t.colour}
        for t in status.tiers.order_by("threshold")
    ]
    tiers[2]["threshold"] = 2000
    tiers.append({"code": "platinum", "name": "Platinum", "threshold": 5000, "colour": ""})

    response = admin_client.post(url("tiergroup", "change", status.pk), _inline_post(status, tiers))

    assert response.status_code == 302, response.context["errors"]
    status.refresh_from_db()
    assert (status.extend_expiration, status.downgrade) == ("qualifying_reset_date", "one_step")
    assert list(status.tiers.order_by("threshold").values_list("code", "threshold")) == [
        ("blue", 0),
        ("silver", 500),
        ("gold", 2000),
        ("platinum", 5000),
    ]


def test_a_tier_group_without_a_base_tier_is_refused(admin_client, status):
    tiers = [
        {"id": t.pk, "code": t.code, "name": t.name, "threshold": t.threshold or 100}
        for t in status.tiers.order_by("threshold")
    ]

    response = admin_client.post(url("tiergroup", "change", status.pk), _inline_post(status, tiers))

    assert response.status_code == 200
    assert "base tier with threshold 0" in response.content.decode()
    assert status.tiers.filter(threshold=0).exists()


def test_a_tier_group_on_a_redeemable_currency_is_refused(admin_client, status, pts):
    data = _inline_post(status, [], qualifying_currency=pts.pk)
    data["tiers-TOTAL_FORMS"] = "0"

    response = admin_client.post(url("tiergroup", "add"), {**data, "code": "other"})

    assert response.status_code == 200
    assert not TierGroup.objects.filter(code="other").exists()


def test_member_page_shows_tiers_benefits_history_and_events(admin_client, silver):
    content = admin_client.get(url("member", "change", silver.pk)).content.decode()

    assert "Silver" in content and "Gold" in content  # current tier and next tier
    assert "Free shipping" in content
    assert "Upgrade" in content  # tier history
    assert "tier_upgraded" in content or "Tier Upgraded" in content  # member events
    assert url("member", "set_tier", silver.pk) in content  # the object tool


def test_set_tier_form_calls_the_service(admin_client, silver, status):
    gold = status.tiers.get(code="gold")
    until = timezone.localdate() + dt.timedelta(days=200)

    response = admin_client.post(
        url("member", "set_tier", silver.pk),
        {"tier": gold.pk, "valid_until": until.isoformat(), "reason": "VIP guest"},
    )

    assert response.status_code == 302
    state = MemberTier.objects.get(member=silver)
    assert (state.tier, state.valid_until) == (gold, until)
    change = TierHistory.objects.filter(member=silver).latest("id")
    assert (change.reason, change.actor, change.note) == ("manual", "admin", "VIP guest")


def test_set_tier_refusal_is_shown_and_writes_nothing(admin_client, silver, status):
    gold = status.tiers.get(code="gold")
    before = TierHistory.objects.count()

    response = admin_client.post(
        url("member", "set_tier", silver.pk), {"tier": gold.pk, "reason": "no date"}
    )

    assert response.status_code == 200
    assert "give the date its validity ends" in response.content.decode()
    assert TierHistory.objects.count() == before


def test_set_tier_needs_its_permission(client, silver):
    user = User.objects.create_user("agent", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(user)

    assert client.get(url("member", "set_tier", silver.pk)).status_code == 403
    assert (
        url("member", "set_tier", silver.pk)
        not in client.get(url("member", "change", silver.pk)).content.decode()
    )


@pytest.mark.parametrize("model", [MemberTier, TierHistory, MemberEvent])
def test_tier_state_history_and_events_are_read_only(admin_client, silver, model):
    obj = model.objects.filter(member=silver).first()
    name = model._meta.model_name

    assert admin_client.get(url(name, "add")).status_code == 403
    assert admin_client.post(url(name, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_tier_group_changelist_costs_a_bounded_number_of_queries(
    admin_client, program, tqp, django_assert_max_num_queries
):
    for i in range(10):
        make_group(program, tqp, code=f"group-{i}")
    admin_client.get(url("tiergroup"))

    with django_assert_max_num_queries(12):
        admin_client.get(url("tiergroup"))
    assert Tier.objects.count() == 30

"""Transactions through the API: post (each type), idempotent replay, conflicts, refusals that
change nothing, reading one back, simulation, transfers, and isolation between programs."""

import datetime as dt

import pytest

from loyalty.models import Balance, LedgerEntry, Transaction
from loyalty.services.api_keys import api_key_create
from tests.api.conftest import assert_error
from tests.factories import CurrencyFactory, MemberFactory, ProgramFactory

pytestmark = pytest.mark.django_db


def purchase(member, external_id="order-1", **extra):
    return {
        "external_id": external_id,
        "member": member.membership_number,
        "type": "accrual",
        "subtype": "purchase",
        "occurred_at": "2025-05-01T12:30:00+02:00",
        "amount": "120.50",
        "currency": "EUR",
        "channel": "store",
        "lines": [{"sku": "BEANS", "category": "coffee", "quantity": "1", "unit_price": "120.50"}],
        **extra,
    }


def redemption(member, external_id="redeem-1", points="500"):
    return {
        "external_id": external_id,
        "member": member.membership_number,
        "type": "redemption",
        "subtype": "reward",
        "points": points,
        "points_currency": "PTS",
        "occurred_at": "2025-05-02T09:00:00+02:00",
    }


def available(member, currency="PTS"):
    balance = Balance.objects.filter(member=member, currency__code=currency).first()
    return balance.available if balance else 0


def test_purchase_answers_201_with_status_and_entries(api, base_rules, member):
    response = api.post("/api/v1/transactions/", purchase(member), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "processed" and body["external_id"] == "order-1"
    assert body["amount"] == "120.50" and body["occurred_at"] == "2025-05-01T10:30:00+00:00"
    assert body["lines"] == [
        {"sku": "BEANS", "category": "coffee", "quantity": "1.000", "unit_price": "120.50"}
    ]
    assert {(e["currency"], e["points"], e["rule"]["code"]) for e in body["entries"]} == {
        ("PTS", "120", "base"),
        ("TQP", "120", "base-tqp"),
    }


def test_replay_answers_200_with_the_same_body_and_writes_nothing(api, base_rules, member):
    first = api.post("/api/v1/transactions/", purchase(member), format="json")
    entries = LedgerEntry.objects.count()
    again = api.post("/api/v1/transactions/", purchase(member), format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert LedgerEntry.objects.count() == entries


def test_replay_with_other_values_is_409_naming_the_fields(api, base_rules, member):
    api.post("/api/v1/transactions/", purchase(member), format="json")
    changed = purchase(member, amount="130.00", channel="online")
    error = assert_error(
        api.post("/api/v1/transactions/", changed, format="json"), 409, "idempotency_conflict"
    )
    assert set(error["fields"]) == {"amount", "channel"}
    assert Transaction.objects.count() == 1


def test_redemption_and_insufficient_points(api, funded):
    response = api.post("/api/v1/transactions/", redemption(funded), format="json")
    assert response.status_code == 201, response.content
    assert [(e["kind"], e["points"]) for e in response.json()["entries"]] == [
        ("redemption", "-500")
    ]
    before = (LedgerEntry.objects.count(), Transaction.objects.count())
    too_much = redemption(funded, external_id="redeem-2", points="501")
    error = assert_error(
        api.post("/api/v1/transactions/", too_much, format="json"), 422, "insufficient_points"
    )
    assert "points" in error["fields"]
    assert (LedgerEntry.objects.count(), Transaction.objects.count()) == before
    assert available(funded) == 500


def test_redemption_by_a_suspended_member_is_422(api, funded):
    funded.status = "suspended"
    funded.save()
    response = api.post("/api/v1/transactions/", redemption(funded), format="json")
    assert_error(response, 422, "member_not_active")
    assert available(funded) == 1000


def test_reversal_takes_back_a_partial_return(api, base_rules, member):
    api.post("/api/v1/transactions/", purchase(member, amount="100.00", lines=[]), format="json")
    response = api.post(
        "/api/v1/transactions/",
        {
            "external_id": "return-1",
            "member": member.membership_number,
            "type": "reversal",
            "original_external_id": "order-1",
            "amount": "25.00",
            "occurred_at": "2025-05-03T16:00:00+02:00",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["original_external_id"] == "order-1"
    assert {(e["currency"], e["points"]) for e in body["entries"]} == {
        ("PTS", "-25"),
        ("TQP", "-25"),
    }
    assert available(member) == 75


def test_reversal_of_an_unknown_transaction_is_422(api, member, pts):
    body = {
        "external_id": "return-1",
        "member": member.membership_number,
        "type": "reversal",
        "original_external_id": "nope",
        "occurred_at": "2025-05-03T16:00:00+02:00",
    }
    error = assert_error(
        api.post("/api/v1/transactions/", body, format="json"), 422, "invalid_reversal"
    )
    assert "original_external_id" in error["fields"]


def test_adjustment_needs_a_reason(api, member, pts):
    body = {
        "external_id": "adj-1",
        "member": member.membership_number,
        "type": "adjustment",
        "points": "250",
        "points_currency": "PTS",
        "occurred_at": "2025-05-04T10:00:00+02:00",
    }
    error = assert_error(api.post("/api/v1/transactions/", body, format="json"), 400, "invalid")
    assert "reason" in error["fields"]
    body["reason"] = "goodwill"
    assert api.post("/api/v1/transactions/", body, format="json").status_code == 201
    assert available(member) == 250


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"occurred_at": "2025-05-01T12:30:00"}, {"occurred_at"}),
        ({"occurred_at": "yesterday"}, {"occurred_at"}),
        ({"type": "gift"}, {"type"}),
        ({"amount": "12.345"}, {"amount"}),
        ({"lines": [{"quantity": "-1"}]}, {"lines[0].quantity"}),
        ({"subtype": "unknown"}, {"subtype"}),
        ({"external_id": ""}, {"external_id"}),
        ({"attributes": "text"}, {"attributes"}),
    ],
)
def test_malformed_bodies_are_400_per_field(api, base_rules, member, change, fields):
    body = {**purchase(member), **change}
    error = assert_error(api.post("/api/v1/transactions/", body, format="json"), 400, "invalid")
    assert set(error["fields"]) == fields
    assert not Transaction.objects.exists()


def test_broken_json_and_other_media_types(api):
    response = api.generic(
        "POST", "/api/v1/transactions/", "{not json", content_type="application/json"
    )
    assert_error(response, 400, "parse_error")
    response = api.post("/api/v1/transactions/", {"a": "b"}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")
    assert_error(api.get("/api/v1/transactions/"), 405, "method_not_allowed")


def test_unknown_member_or_currency_is_422(api, member, pts):
    body = {**redemption(member), "member": "nobody"}
    assert_error(api.post("/api/v1/transactions/", body, format="json"), 422, "unknown_member")
    body = {**redemption(member), "points_currency": "MILES"}
    assert_error(api.post("/api/v1/transactions/", body, format="json"), 422, "unknown_currency")


def test_read_a_transaction_with_its_entries(api, base_rules, member):
    posted = api.post("/api/v1/transactions/", purchase(member), format="json").json()
    response = api.get("/api/v1/transactions/order-1/")
    assert response.status_code == 200
    assert response.json() == posted
    assert_error(api.get("/api/v1/transactions/nope/"), 404, "not_found")


def test_other_programs_transactions_and_members_do_not_exist(api, base_rules, member, post):
    tea = ProgramFactory(code="tea")
    CurrencyFactory(program=tea, code="PTS")
    stranger = MemberFactory(program=tea)
    post(member, amount=10, external_id="shared-id")
    _, tea_key = api_key_create(program=tea, name="tea", scopes=["members:read"])
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {tea_key}")
    assert_error(api.get("/api/v1/transactions/shared-id/"), 404, "not_found")
    assert_error(api.get(f"/api/v1/members/{member.membership_number}/"), 404, "not_found")
    assert api.get(f"/api/v1/members/{stranger.membership_number}/").status_code == 200


def test_posting_for_another_programs_member_is_refused(api, pts):
    stranger = MemberFactory(program=ProgramFactory(code="tea"))
    body = redemption(stranger)
    assert_error(api.post("/api/v1/transactions/", body, format="json"), 422, "unknown_member")
    assert not Transaction.objects.exists()


# --- simulation ----------------------------------------------------------------------------


def test_simulate_shows_fired_and_not_fired_rules_and_writes_nothing(
    api, program, base_rules, member
):
    from tests.factories import EarningRuleFactory

    EarningRuleFactory(
        program=program,
        code="app-bonus",
        name="App bonus",
        conditions={"subtypes": ["purchase"], "channels": ["app"]},
        award={"type": "fixed", "currency": "PTS", "points": "50"},
    )
    response = api.post("/api/v1/transactions/simulate/", purchase(member), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["would_post"] is True and body["refusal"] is None
    assert {(a["rule_code"], a["currency"], a["points"]) for a in body["awards"]} == {
        ("base", "PTS", "120"),
        ("base-tqp", "TQP", "120"),
    }
    assert [n["rule_code"] for n in body["not_fired"]] == ["app-bonus"]
    assert body["not_fired"][0]["reason"]
    assert body["totals"] == {"PTS": "120", "TQP": "120"}
    assert not Transaction.objects.exists()


def test_simulate_a_redemption_reports_the_refusal(api, funded):
    response = api.post(
        "/api/v1/transactions/simulate/", redemption(funded, points="2000"), format="json"
    )
    body = response.json()
    assert response.status_code == 200
    assert body["would_post"] is False
    assert body["refusal"]["code"] == "insufficient_points"


def test_simulate_refuses_malformed_and_unsupported_bodies(api, member, pts):
    body = {**purchase(member), "occurred_at": "2025-05-01"}
    error = assert_error(
        api.post("/api/v1/transactions/simulate/", body, format="json"), 400, "invalid"
    )
    assert "occurred_at" in error["fields"]
    body = {
        "external_id": "adj",
        "member": member.membership_number,
        "type": "adjustment",
        "points": "1",
        "points_currency": "PTS",
        "reason": "r",
        "occurred_at": "2025-05-01T10:00:00+00:00",
    }
    response = api.post("/api/v1/transactions/simulate/", body, format="json")
    assert_error(response, 400, "simulation_unsupported")


# --- transfers -----------------------------------------------------------------------------


def transfer(sender, receiver, external_id="gift-1", points="300"):
    return {
        "external_id": external_id,
        "from": sender.membership_number,
        "to": receiver.membership_number,
        "points": points,
        "points_currency": "PTS",
    }


def test_transfer_201_then_200_then_409(api, program, funded):
    friend = MemberFactory(program=program)
    first = api.post("/api/v1/transfers/", transfer(funded, friend), format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["type"], body["member"], body["counterparty"], body["points"]) == (
        "transfer",
        funded.membership_number,
        friend.membership_number,
        "300",
    )
    again = api.post("/api/v1/transfers/", transfer(funded, friend), format="json")
    assert again.status_code == 200 and again.json() == body
    error = assert_error(
        api.post("/api/v1/transfers/", transfer(funded, friend, points="1"), format="json"),
        409,
        "idempotency_conflict",
    )
    assert set(error["fields"]) == {"points"}
    assert (available(funded), available(friend)) == (700, 300)


def test_transfer_refusals(api, program, funded):
    friend = MemberFactory(program=program)
    stranger = MemberFactory(program=ProgramFactory(code="tea"))
    cases = [
        (transfer(funded, friend, points="5000"), 422, "insufficient_points"),
        (transfer(funded, stranger, external_id="g2"), 422, "unknown_member"),
        (transfer(funded, funded, external_id="g3"), 400, "invalid"),
        ({"external_id": "g4", "from": funded.membership_number}, 400, "invalid"),
    ]
    for body, status, code in cases:
        assert_error(api.post("/api/v1/transfers/", body, format="json"), status, code)
    assert (available(funded), available(friend)) == (1000, 0)


# --- what a transaction did beyond its entries ----------------------------------------------


def reversal(member, external_id="return-1", original="order-1", amount=None):
    body = {
        "external_id": external_id,
        "member": member.membership_number,
        "type": "reversal",
        "original_external_id": original,
        "occurred_at": "2025-05-03T16:00:00+02:00",
    }
    if amount is not None:
        body["amount"] = amount
    return body


def spend_80_of_100(api, member):
    """A purchase of 100.00 (100 PTS, 100 TQP), then a redemption of 80 PTS: 20 PTS left."""
    api.post("/api/v1/transactions/", purchase(member, amount="100.00", lines=[]), format="json")
    response = api.post("/api/v1/transactions/", redemption(member, points="80"), format="json")
    assert response.status_code == 201, response.content


def test_a_plain_purchase_says_nothing_more(api, base_rules, member):
    body = api.post("/api/v1/transactions/", purchase(member), format="json").json()
    assert (body["debt_created"], body["written_off"], body["notices"]) == ([], [], [])
    assert body["unrecovered_points"] == "0"
    assert [e["expired"] for e in body["entries"]] == [False, False]


def test_a_reversal_that_finds_too_few_points_says_how_much_debt_it_created(
    api, base_rules, member
):
    # given 20 PTS left of a purchase's 100
    spend_80_of_100(api, member)
    # when the whole purchase is returned
    response = api.post("/api/v1/transactions/", reversal(member), format="json")
    # then 20 PTS are taken back and 80 PTS become debt; TQP are all there
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["debt_created"] == [{"currency": "PTS", "points": "80"}]
    assert body["written_off"] == [] and body["unrecovered_points"] == "0"
    assert len(body["notices"]) == 1 and "debt of 80 PTS" in body["notices"][0]
    balance = Balance.objects.get(member=member, currency__code="PTS")
    assert (balance.available, balance.debt) == (0, 80)
    # and reading it back says the same
    assert api.get("/api/v1/transactions/return-1/").json() == body


def test_a_reversal_in_a_currency_without_debt_says_what_it_wrote_off(api, base_rules, member, pts):
    pts.allow_debt = False
    pts.save()
    spend_80_of_100(api, member)
    body = api.post("/api/v1/transactions/", reversal(member), format="json").json()
    assert body["debt_created"] == []
    assert body["written_off"] == [{"currency": "PTS", "points": "80"}]
    assert body["unrecovered_points"] == "80"
    assert any("80 PTS could not be taken back" in notice for notice in body["notices"])
    balance = Balance.objects.get(member=member, currency__code="PTS")
    assert (balance.available, balance.debt) == (0, 0)
    assert Transaction.objects.get(external_id="return-1").unrecovered_points == 80


def test_partial_returns_write_off_each_its_own_shortfall(api, base_rules, member, pts):
    pts.allow_debt = False
    pts.save()
    spend_80_of_100(api, member)
    # the first half takes back 50 PTS of which 20 are there; the second, 50 of none
    first = api.post(
        "/api/v1/transactions/", reversal(member, "return-1", amount="50.00"), format="json"
    ).json()
    second = api.post(
        "/api/v1/transactions/", reversal(member, "return-2", amount="50.00"), format="json"
    ).json()
    assert first["written_off"] == [{"currency": "PTS", "points": "30"}]
    assert second["written_off"] == [{"currency": "PTS", "points": "50"}]
    assert api.get("/api/v1/transactions/return-1/").json() == first


def test_a_reversal_of_a_redemption_creates_no_debt(api, funded):
    api.post("/api/v1/transactions/", redemption(funded), format="json")
    body = api.post(
        "/api/v1/transactions/", reversal(funded, original="redeem-1"), format="json"
    ).json()
    assert [(e["kind"], e["points"]) for e in body["entries"]] == [("reversal", "500")]
    assert (body["debt_created"], body["written_off"], body["notices"]) == ([], [], [])


def test_a_backdated_accrual_whose_points_already_expired_says_so(api, base_rules, member, pts):
    # given points that expire at the end of the month a year after they are earned
    pts.expiry_policy, pts.expiry_months, pts.expiry_round_to = "rolling", 12, "end_of_month"
    pts.save()
    # when a purchase dated two years ago is posted
    body = purchase(member, occurred_at="2023-03-10T12:00:00+01:00", amount="40.00", lines=[])
    response = api.post("/api/v1/transactions/", body, format="json")
    # then its PTS credit is expired at once, and the response says so
    assert response.status_code == 201, response.content
    posted = response.json()
    flags = {(e["currency"], e["expires_on"], e["expired"]) for e in posted["entries"]}
    assert flags == {("PTS", "2024-03-31", True), ("TQP", None, False)}
    assert len(posted["notices"]) == 1
    assert "40 PTS" in posted["notices"][0] and "2024-03-31" in posted["notices"][0]
    assert "expired" in posted["notices"][0]
    balance = Balance.objects.get(member=member, currency__code="PTS")
    assert (balance.available, balance.expired) == (0, 40)
    assert api.get("/api/v1/transactions/order-1/").json() == posted


def test_an_accrual_that_pays_a_debt_reports_only_what_expired(api, base_rules, member, pts):
    # given a debt of 80 PTS (see above) and points that expire a year after
    spend_80_of_100(api, member)
    api.post("/api/v1/transactions/", reversal(member), format="json")
    pts.expiry_policy, pts.expiry_months, pts.expiry_round_to = "rolling", 12, "end_of_month"
    pts.save()
    # when a purchase of 100.00 dated two years ago is posted
    body = purchase(
        member, "order-2", occurred_at="2023-03-10T12:00:00+01:00", amount="100.00", lines=[]
    )
    posted = api.post("/api/v1/transactions/", body, format="json").json()
    # then 80 of its PTS paid the debt and only the other 20 expired
    assert len(posted["notices"]) == 1 and posted["notices"][0].startswith("20 PTS")
    balance = Balance.objects.get(member=member, currency__code="PTS")
    assert (balance.available, balance.debt, balance.expired) == (0, 0, 20)


def test_a_ledger_page_flags_expired_credits(api, base_rules, member, pts):
    pts.expiry_policy, pts.expiry_months, pts.expiry_round_to = "rolling", 12, "end_of_month"
    pts.save()
    old = purchase(member, occurred_at="2023-03-10T12:00:00+01:00", amount="40.00", lines=[])
    api.post("/api/v1/transactions/", old, format="json")
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    new = purchase(member, "order-2", occurred_at=recent.isoformat(), lines=[])
    api.post("/api/v1/transactions/", new, format="json")
    page = api.get(f"/api/v1/members/{member.membership_number}/ledger/?currency=PTS").json()
    assert [(e["kind"], e["points"], e["expired"]) for e in page["results"]] == [
        ("accrual", "120", False),
        ("expiry", "-40", False),
        ("accrual", "40", True),
    ]

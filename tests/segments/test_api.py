"""The API's segments: `segments/`, `segments/{code}/members/`, `members/?segment=`, and the
member body's `rfm` and `churn_risk`."""

import pytest

from loyalty.services.api_keys import SCOPES
from loyalty.services.rfm import rfm_score
from loyalty.services.segments import segment_refresh, segment_save
from tests.api.conftest import assert_error
from tests.factories import MemberFactory, ProgramFactory
from tests.segments.conftest import AS_OF, days_ago, purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def polish(program):
    """Segment "pl" (members from Poland), refreshed: P1 and P2 in it, D1 not."""
    segment = segment_save(
        program=program, code="pl", name="Poland", conditions={"countries": ["PL"]}
    )
    MemberFactory(program=program, membership_number="P1", country="PL", enrolled_at=days_ago(3))
    MemberFactory(program=program, membership_number="P2", country="PL", enrolled_at=days_ago(2))
    MemberFactory(program=program, membership_number="D1", country="DE", enrolled_at=days_ago(1))
    segment_save(program=program, code="empty", name="Nobody", conditions={"countries": ["FR"]})
    return segment_refresh(segment=segment, as_of=AS_OF)


def test_segments_list_with_counts(api, polish):
    body = api.get("/api/v1/segments/").json()
    assert body["count"] == 2
    first, second = body["results"]
    assert (first["code"], first["member_count"], first["refreshed_at"]) == ("empty", 0, None)
    assert second["code"] == "pl"
    assert second["name"] == "Poland"
    assert second["member_count"] == 2
    assert second["refreshed_as_of"] == AS_OF.isoformat()
    assert second["refreshed_at"].endswith(("+00:00", "Z")) or "+" in second["refreshed_at"]
    assert set(second) == {
        "code",
        "name",
        "description",
        "status",
        "member_count",
        "refreshed_at",
        "refreshed_as_of",
    }


def test_segment_members_newest_first_and_paginated(api, polish):
    body = api.get("/api/v1/segments/pl/members/?page_size=1").json()
    assert body["count"] == 2
    assert [m["membership_number"] for m in body["results"]] == ["P2"]
    assert body["next"]


def test_unknown_segment_is_404(api, polish):
    assert_error(api.get("/api/v1/segments/nope/members/"), 404, "not_found")


def test_segments_of_other_programs_do_not_exist_here(make_client, polish):
    other = ProgramFactory(code="other")
    client = make_client(program=other)
    assert client.get("/api/v1/segments/").json()["count"] == 0
    assert_error(client.get("/api/v1/segments/pl/members/"), 404, "not_found")


def test_members_filter_by_segment(api, polish):
    body = api.get("/api/v1/members/?segment=pl").json()
    assert sorted(m["membership_number"] for m in body["results"]) == ["P1", "P2"]
    assert api.get("/api/v1/members/?segment=empty").json()["count"] == 0
    assert api.get("/api/v1/members/?segment=unknown").json()["count"] == 0
    assert api.get("/api/v1/members/").json()["count"] == 3


@pytest.mark.parametrize("path", ["/api/v1/segments/", "/api/v1/segments/pl/members/"])
def test_segments_need_members_read(make_client, polish, path):
    client = make_client(scopes=[s for s in SCOPES if s != "members:read"])
    error = assert_error(client.get(path), 403, "missing_scope")
    assert "members:read" in error["fields"]["scope"]
    assert make_client(scopes=["members:read"]).get(path).status_code == 200


def test_member_body_has_rfm_and_churn_risk(api, program, django_assert_max_num_queries):
    scored = MemberFactory(program=program, membership_number="S", enrolled_at=days_ago(400))
    purchase(scored, days=10)
    rfm_score(program=program, as_of=AS_OF)
    MemberFactory(program=program, membership_number="U")  # enrolled now: not scored
    detail = api.get("/api/v1/members/S/").json()
    assert detail["rfm"] == {
        "recency": 1,
        "frequency": 1,
        "monetary": 1,
        "label": "lost",
        "as_of": AS_OF.isoformat(),
    }
    assert detail["churn_risk"] == "0.014"  # 0.5 * 10/365 + 0.5 * 0 (no decline), 3 decimals
    unscored = api.get("/api/v1/members/U/").json()
    assert (unscored["rfm"], unscored["churn_risk"]) == (None, None)
    # the list reads the scores with the members (no query per member)
    for _ in range(5):
        MemberFactory(program=program)
    with django_assert_max_num_queries(6):
        listed = api.get("/api/v1/members/").json()
    assert {m["membership_number"]: m["churn_risk"] for m in listed["results"]}["S"] == "0.014"

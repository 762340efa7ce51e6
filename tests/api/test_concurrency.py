"""No double spend through HTTP: concurrent redemptions against a live server (real threads,
real connections, real PostgreSQL row locks)."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from loyalty.models import Balance, LedgerEntry
from loyalty.services.api_keys import api_key_create


def _post(url: str, key: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_redemptions_of_100_from_1000_spend_exactly_1000(
    live_server, program, pts, member, post
):
    # given 1,000 available points and a key that may redeem
    post(member, "adjustment", points=1000, points_currency="PTS", reason="opening")
    _, key = api_key_create(program=program, name="pos", scopes=["redemptions:write"])
    url = f"{live_server.url}/api/v1/transactions/"
    results: list[tuple[int, dict]] = []
    barrier = threading.Barrier(20)

    def redeem(n: int) -> None:
        body = {
            "external_id": f"redeem-{n}",
            "member": member.membership_number,
            "type": "redemption",
            "subtype": "reward",
            "points": "100",
            "points_currency": "PTS",
            "occurred_at": "2025-05-02T09:00:00+02:00",
        }
        barrier.wait()
        results.append(_post(url, key, body))

    # when 20 clients redeem 100 each at the same moment
    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then exactly 10 succeed, the others are refused for insufficient points
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 10 + [422] * 10, results
    refusals = {body["error"]["code"] for status, body in results if status == 422}
    assert refusals == {"insufficient_points"}
    balance = Balance.objects.get(member=member, currency=pts)
    assert (balance.available, balance.redeemed) == (0, 1000)
    assert LedgerEntry.objects.filter(member=member, kind="redemption").count() == 10

"""The segment page in a real browser: the live count follows the conditions as they are
typed, names a mistake by its key, and the saved segment refreshes to that count. The
screenshots go to tests/browser/artifacts/."""

import json
from pathlib import Path

import pytest
from django.urls import reverse

from loyalty.models import Segment
from tests.browser.conftest import CHROMIUM
from tests.factories import MemberFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(), reason=f"no chromium executable at {CHROMIUM}"
    ),
]


def test_live_count_while_editing_then_save_and_refresh(signed_in, live_server, program, shoot):
    page = signed_in
    for country in ("PL", "PL", "PL", "DE"):
        MemberFactory(program=program, country=country)
    page.goto(live_server.url + reverse("admin:loyalty_segment_add"))
    page.select_option("#id_program", str(program.pk))
    count = page.locator('#segment-live-count [data-role="count"]')
    page.fill("#id_conditions", "{}")
    page.wait_for_function(
        "document.querySelector('#segment-live-count [data-role=count]').textContent === '4'"
    )
    page.fill("#id_conditions", json.dumps({"countries": ["PL"]}))
    page.wait_for_function(
        "document.querySelector('#segment-live-count [data-role=count]').textContent === '3'"
    )
    shoot(page, "live-count")
    page.fill("#id_conditions", json.dumps({"spend_min": "10"}))
    errors = page.locator('#segment-live-count [data-role="errors"]')
    errors.wait_for(state="visible")
    assert "spend_days: required with spend_min" in errors.text_content()
    assert "colour" not in errors.text_content()
    assert count.text_content() == "–"
    shoot(page, "live-count-error")
    page.fill("#id_conditions", json.dumps({"countries": ["PL"]}))
    page.fill("#id_code", "poland")
    page.fill("#id_name", "Poland")
    page.click("input[name=_save]")
    page.wait_for_url(live_server.url + reverse("admin:loyalty_segment_changelist"))
    segment = Segment.objects.get(code="poland")
    page.check(f"input[name=_selected_action][value='{segment.pk}']")
    page.select_option("select[name=action]", "refresh_segments")
    page.click("button[name=index]")
    page.wait_for_selector("text=Refreshed: poland (3)")
    shoot(page, "refreshed")
    assert Segment.objects.get(pk=segment.pk).member_count == 3

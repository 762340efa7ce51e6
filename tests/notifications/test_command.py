"""`manage.py create_webhook`: the secret is the last line; refusals are clear and exit
non-zero (a CommandError, which manage.py turns into exit status 1)."""

import io

import pytest
from django.core.management import CommandError, call_command

from loyalty.models import WebhookSubscription

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_webhook", *args, stdout=out)
    return out.getvalue().splitlines()


def test_the_secret_is_the_last_line(program, allow_private):
    lines = run("--program", "coffee", "--url", "http://127.0.0.1:9/in", "--events", "all")

    subscription = WebhookSubscription.objects.get()
    assert lines[-1] == subscription.secret
    assert lines[-1].startswith("whsec_")
    assert subscription.all_events and subscription.event_types == []
    assert subscription.created_by == "create_webhook"
    assert "not shown again" in lines[0]


def test_event_types_are_listed_with_commas(program, allow_private):
    run(
        "--program",
        "coffee",
        "--url",
        "http://127.0.0.1:9/in",
        "--events",
        "tier_upgraded, birthday",
    )

    subscription = WebhookSubscription.objects.get()
    assert not subscription.all_events
    assert subscription.event_types == ["birthday", "tier_upgraded"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--program", "nope", "--url", "https://93.184.216.34/", "--events", "all"), "program"),
        (
            ("--program", "coffee", "--url", "https://93.184.216.34/", "--events", "birthday,x"),
            "Unknown event type(s) x",
        ),
        (("--program", "coffee", "--url", "https://93.184.216.34/", "--events", ","), "all"),
        (("--program", "coffee", "--url", "not a url", "--events", "all"), "https://"),
        (("--program", "coffee", "--url", "http://10.0.0.1/", "--events", "all"), "public"),
    ],
)
def test_refusals_say_why_and_create_nothing(program, args, message):
    with pytest.raises(CommandError) as refused:
        run(*args)

    assert message in str(refused.value)
    assert not WebhookSubscription.objects.exists()


def test_a_missing_argument_is_refused(program):
    with pytest.raises(CommandError, match="--events"):
        run("--program", "coffee", "--url", "https://93.184.216.34/")

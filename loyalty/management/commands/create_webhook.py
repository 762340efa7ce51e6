"""`manage.py create_webhook --program CODE --url URL --events a,b|all`: subscribes a URL to a
program's member events and prints the signing secret as the last line of its output (it is
shown once)."""

from django.core.management.base import BaseCommand, CommandError

from loyalty.exceptions import LoyaltyError
from loyalty.models import Program
from loyalty.services.events import EVENT_TYPES
from loyalty.services.webhooks import webhook_subscription_create


class Command(BaseCommand):
    help = "Subscribe a URL to a program's member events and print its secret (last line)."

    def add_arguments(self, parser):
        parser.add_argument("--program", required=True, help="Program code.")
        parser.add_argument("--url", required=True, help="The receiver (https://...).")
        parser.add_argument(
            "--events",
            required=True,
            help=f"Comma-separated, of: {','.join(sorted(EVENT_TYPES))}; or all.",
        )
        parser.add_argument("--description", default="", help="Who or what receives them.")

    def handle(self, *args, program, url, events, description, **options):
        found = Program.objects.filter(code=program).first()
        if found is None:
            raise CommandError(f"Unknown program {program!r}.")
        try:
            subscription, secret = webhook_subscription_create(
                program=found,
                url=url,
                events=events,
                description=description,
                actor="create_webhook",
            )
        except LoyaltyError as exc:
            raise CommandError(exc.message) from exc
        kinds = "all events" if subscription.all_events else ", ".join(subscription.event_types)
        self.stdout.write(
            f"Webhook {subscription.pk} for {found.code}: {subscription.url} ({kinds}). "
            "Its signing secret follows; store it now, it is not shown again:"
        )
        self.stdout.write(secret)

"""`manage.py create_partner_user --partner CODE --username NAME [--email E] [--password P]`:
a login of the partner portal. Without --password it prints a one-time link where the user
chooses one (valid for PASSWORD_RESET_TIMEOUT, and only until it is used)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from loyalty.exceptions import LoyaltyError
from partners.models import Partner
from partners.services.partner_users import partner_user_create, password_set_path


class Command(BaseCommand):
    help = "Create a partner portal user; without --password, print a link to set one."

    def add_arguments(self, parser):
        parser.add_argument("--partner", required=True, help="Partner code.")
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password",
            default=None,
            help="Omit it to print a one-time link where the user chooses a password.",
        )
        parser.add_argument(
            "--base-url",
            default=settings.TESSERA_PORTAL_BASE_URL,
            help="Where the portal is served, for the link "
            f"(default: TESSERA_PORTAL_BASE_URL, {settings.TESSERA_PORTAL_BASE_URL}).",
        )

    def handle(self, *args, partner, username, email, password, base_url, **options):
        found = Partner.objects.filter(code=partner).first()
        if found is None:
            raise CommandError(f"Unknown partner {partner!r}.")
        try:
            partner_user = partner_user_create(
                partner=found,
                username=username,
                email=email,
                password=password,
                actor="create_partner_user",
            )
        except LoyaltyError as exc:
            reasons = "; ".join(f"{field}: {reason}" for field, reason in exc.fields.items())
            raise CommandError(f"{exc.message} {reasons}".strip()) from exc
        self.stdout.write(
            f"Created partner user {partner_user.user.username!r} for {found.name} ({found.code})."
        )
        if password is None:
            self.stdout.write(
                "No password yet. Send the user this one-time link to choose one "
                f"(valid {settings.PASSWORD_RESET_TIMEOUT // 86400} days, until used):"
            )
            self.stdout.write(base_url.rstrip("/") + password_set_path(partner_user))

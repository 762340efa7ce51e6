"""Partner portal accounts: a Django user linked to one partner, never staff.

What this module guarantees: a partner user is created with the partner link in the same
database transaction, is neither staff nor superuser (the admin refuses them), has a unique
username (compared case-insensitively, so `Anna` and `anna` are not two accounts), and either
a password that passes the password validators or no usable password at all until they set
one through a one-time link (`password_set_path`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from loyalty.exceptions import ValidationFailed
from partners.models import Partner, PartnerUser


def partner_user_create(
    *,
    partner: Partner,
    username: str,
    email: str = "",
    password: str | None = None,
    actor: str,
) -> PartnerUser:
    """Create a portal login for `partner`. Without a password the account cannot log in until
    its user follows the link of `password_set_path` (so nobody types a password for them)."""
    user_model = get_user_model()
    username = username.strip()
    email = email.strip()
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "A partner user needs a username."
    elif user_model.objects.filter(username__iexact=username).exists():
        errors["username"] = f"The username {username!r} is taken."
    if email:
        try:
            validate_email(email)
        except ValidationError:
            errors["email"] = f"{email!r} is not an e-mail address."
    if password is not None:
        candidate = user_model(username=username, email=email)
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            errors["password"] = " ".join(exc.messages)
    if errors:
        raise ValidationFailed("The partner user cannot be created.", fields=errors)
    try:
        with transaction.atomic():
            user = user_model(username=username, email=email, is_staff=False, is_superuser=False)
            if password is None:
                user.set_unusable_password()
            else:
                user.set_password(password)
            user.save()
            return PartnerUser.objects.create(user=user, partner=partner, created_by=actor)
    except IntegrityError as exc:  # the same username created meanwhile
        raise ValidationFailed(
            "The partner user cannot be created.",
            fields={"username": f"The username {username!r} is taken."},
        ) from exc


def password_set_path(partner_user: PartnerUser) -> str:
    """The portal path where this user chooses a password. One-time: Django's reset token is
    bound to the password and the last login, so it stops working once either changes, and
    after PASSWORD_RESET_TIMEOUT."""
    user = partner_user.user
    return reverse(
        "portal:password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )


def partner_user_delete(*, partner_user: PartnerUser, actor: str) -> None:
    """Close a portal login: the Django user goes with its partner link (a partner user is
    nothing else), so the username is free again and no orphan account is left."""
    with transaction.atomic():
        user = partner_user.user
        PartnerUser.objects.filter(pk=partner_user.pk).delete()
        user.delete()

"""The back office's roles: three groups of Django permissions, defined here and nowhere else.

- Program manager: every permission of loyalty, partners, promotions, vouchers, reports and the
  job schedule (django_celery_beat), and reading the audit history.
- Support agent: members (view, add, change), transactions (view, and add: what adjusting
  points asks for), and read access to what a member's page shows (ledger entries, balances,
  buckets, tiers, tier history, member events). It deletes nothing.
- Analyst: the view permission of every model of loyalty, partners and reports; nothing else.

`roles_sync` gives each group exactly its permissions, creating the groups and any missing
permission first, so running it again changes nothing. Migration 0010 runs it, and so does
every `migrate` when it ends (post_migrate), so the roles cover models added later.
Permissions given to these three groups by hand are reset by the next sync: a variant of a
role is another group.

Nothing here imports a model: the functions take the app registry, so a migration passes its
historical one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q

PROGRAM_MANAGER = "Program manager"
SUPPORT_AGENT = "Support agent"
ANALYST = "Analyst"


@dataclass(frozen=True)
class Role:
    """A group: every permission of `all_of` apps, the view permissions of every model of
    `view_of` apps, and the listed `permissions` ("app_label.codename")."""

    name: str
    all_of: tuple[str, ...] = ()
    view_of: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()


ROLES = (
    Role(
        PROGRAM_MANAGER,
        all_of=("loyalty", "partners", "promotions", "vouchers", "reports", "django_celery_beat"),
        permissions=("auditlog.view_logentry",),  # the audit history, read-only
    ),
    Role(
        SUPPORT_AGENT,
        permissions=(
            "loyalty.view_member",
            "loyalty.add_member",
            "loyalty.change_member",
            "loyalty.view_transaction",
            # With view_member, what the admin's adjust-points page and the API's
            # adjustments:write scope check.
            "loyalty.add_transaction",
            "loyalty.view_transactionline",  # a transaction's page lists its lines
            "loyalty.view_ledgerentry",
            "loyalty.view_balance",
            "loyalty.view_bucket",
            "loyalty.view_tier",
            "loyalty.view_membertier",
            "loyalty.view_tierhistory",
            "loyalty.view_memberevent",
            # Their adjustments above the approval threshold wait there for a manager.
            "loyalty.view_approvalrequest",
        ),
    ),
    Role(ANALYST, view_of=("loyalty", "partners", "reports")),
)
ROLE_NAMES = tuple(role.name for role in ROLES)


def roles_sync(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> list:
    """Create or update the three groups so that each holds exactly its role's permissions.

    Permissions are created first (Django creates them only after `migrate` has run every
    migration, too late for the migration that calls this). Returns the groups, in ROLES order.
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    with transaction.atomic(using=using):
        _permissions_create(apps=apps, using=using)
        groups = []
        for role in ROLES:
            group, _ = Group.objects.using(using).get_or_create(name=role.name)
            wanted = Permission.objects.using(using).filter(_role_filter(role, apps=apps))
            _check_listed_permissions_exist(role, wanted, apps)
            group.permissions.set(wanted)
            groups.append(group)
    return groups


def roles_delete(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> int:
    """Remove the three groups (what reversing migration 0010 does); returns how many were."""
    Group = apps.get_model("auth", "Group")
    _, deleted = Group.objects.using(using).filter(name__in=ROLE_NAMES).delete()
    return deleted.get("auth.Group", 0)


# --- helpers -------------------------------------------------------------------------------


def _app_labels() -> set[str]:
    labels = {label for role in ROLES for label in (*role.all_of, *role.view_of)}
    labels |= {name.split(".", 1)[0] for role in ROLES for name in role.permissions}
    return labels


def _model_names(label: str, *, apps) -> list[str]:
    """The app's current models; none when the registry does not know the app (a migration's
    registry holds only apps that have models at that point)."""
    try:
        config = apps.get_app_config(label)
    except LookupError:
        return []
    return [model._meta.model_name for model in config.get_models()]


def _permissions_create(*, apps, using: str) -> None:
    for label in sorted(_app_labels()):
        try:
            config = apps.get_app_config(label)
        except LookupError:
            continue
        # A migration's registry has no models modules; create_permissions skips an app
        # without one, hence the standard stand-in for the duration of the call.
        stand_in = getattr(config, "models_module", None) is None
        if stand_in:
            config.models_module = True
        try:
            create_permissions(config, verbosity=0, using=using, apps=apps)
        finally:
            if stand_in:
                config.models_module = None


def _role_filter(role: Role, *, apps) -> Q:
    """Permissions of current models only: those left behind by a removed model are not given."""
    wanted = Q(pk__in=[])
    for label in role.all_of:
        models = _model_names(label, apps=apps)
        wanted |= Q(content_type__app_label=label, content_type__model__in=models)
    for label in role.view_of:
        models = _model_names(label, apps=apps)
        wanted |= Q(
            content_type__app_label=label,
            content_type__model__in=models,
            codename__in=[f"view_{model}" for model in models],
        )
    for name in role.permissions:
        label, codename = name.split(".", 1)
        wanted |= Q(content_type__app_label=label, codename=codename)
    return wanted


def _model_exists(permission: str, apps) -> bool:
    label, codename = permission.split(".", 1)
    model = codename.split("_", 1)[1]
    try:
        apps.get_model(label, model)
    except LookupError:
        return False
    return True


def _check_listed_permissions_exist(role: Role, permissions, apps=global_apps) -> None:
    """A misspelt or vanished permission in ROLES fails the sync rather than quietly giving
    the role less than it says. A permission of a model that a migration run has not made yet
    (an early migration's historical registry) is given by a later sync (post_migrate)."""
    found = {
        f"{label}.{codename}"
        for label, codename in permissions.values_list("content_type__app_label", "codename")
    }
    missing = sorted(
        name
        for name in set(role.permissions) - found
        if apps is global_apps or _model_exists(name, apps)
    )
    if missing:
        raise LookupError(f"{role.name}: no such permissions: {', '.join(missing)}")

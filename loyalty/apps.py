from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_save


def _sync_periodic_tasks(sender, **kwargs) -> None:
    """After `migrate`, the jobs' default schedule is in the database (see services/schedule)."""
    from loyalty.services.schedule import periodic_tasks_sync

    periodic_tasks_sync()


def _sync_roles(sender, using=None, apps=None, **kwargs) -> None:
    """When `migrate` ends (the post_migrate of the last installed app, once Django has made
    every app's permissions), the roles cover every model, those of apps added later
    included (see loyalty/roles.py)."""
    from django.apps import apps as installed

    if sender is not list(installed.get_app_configs())[-1]:
        return
    from loyalty.roles import roles_sync

    roles_sync(using=using or "default")


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The API's admin (API keys) and its OpenAPI extension (the Api-Key security scheme).
        from loyalty.api import admin, schema  # noqa: F401

        post_migrate.connect(_sync_periodic_tasks, sender=self)
        # The actor of every audit entry (loyalty/audit.py).
        from auditlog.models import LogEntry

        from loyalty.audit import log_entry_add_actor

        pre_save.connect(log_entry_add_actor, sender=LogEntry, dispatch_uid="tessera-audit-actor")
        # Staff limited to some programs (every admin is registered by now: the admin app,
        # first in INSTALLED_APPS, discovered them all in its own ready()).
        from django.contrib import admin as django_admin

        from loyalty.admin.program_scope import scope_admin_site

        scope_admin_site(django_admin.site)
        post_migrate.connect(_sync_roles)

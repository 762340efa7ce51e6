from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_periodic_tasks(sender, **kwargs) -> None:
    """After `migrate`, the jobs' default schedule is in the database (see services/schedule)."""
    from loyalty.services.schedule import periodic_tasks_sync

    periodic_tasks_sync()


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The API's admin (API keys) and its OpenAPI extension (the Api-Key security scheme).
        from loyalty.api import admin, schema  # noqa: F401

        post_migrate.connect(_sync_periodic_tasks, sender=self)

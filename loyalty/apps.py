from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The API's admin (API keys) and its OpenAPI extension (the Api-Key security scheme).
        from loyalty.api import admin, schema  # noqa: F401

"""/api/v1/ endpoints of the promotions app (docs/api.md)."""

app_name = "promotions-api"

urlpatterns: list = []

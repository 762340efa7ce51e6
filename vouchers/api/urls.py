"""/api/v1/ endpoints of the vouchers app (docs/api.md)."""

app_name = "vouchers-api"

urlpatterns: list = []

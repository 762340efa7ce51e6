"""URLs of the partner portal, mounted at /portal/ (namespace `portal`).

Every data page takes its partner from the logged-in user (views.PartnerPortalMixin); the
tests walk these patterns as another partner and expect 404 for every object id."""

from django.urls import path

from partners.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("transactions/", views.TransactionListView.as_view(), name="transactions"),
    path(
        "transactions/export.csv",
        views.TransactionExportView.as_view(),
        name="transactions_export",
    ),
    path("transactions/<int:pk>/", views.TransactionDetailView.as_view(), name="transaction"),
    path("products/", views.ProductListView.as_view(), name="products"),
    path("promotions/", views.PromotionListView.as_view(), name="promotions"),
    path("rules/", views.RuleListView.as_view(), name="rules"),
    path("statements/", views.StatementListView.as_view(), name="statements"),
    path(
        "statements/<int:pk>/<str:fmt>/",
        views.StatementDownloadView.as_view(),
        name="statement_download",
    ),
    # Signing in and out, and choosing a password (Django's views, the portal's templates).
    path("login/", views.PortalLoginView.as_view(), name="login"),
    path("logout/", views.PortalLogoutView.as_view(), name="logout"),
    path("password-reset/", views.PortalPasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        views.PortalPasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        views.PortalPasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        views.PortalPasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]

# Pages that are not the partner's data: anyone may open them, and their forms POST.
PUBLIC = {
    "login",
    "logout",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
}

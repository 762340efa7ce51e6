"""The partner portal's pages: read-only views over `partners.portal.selectors`.

Every data page goes through `PartnerPortalMixin`: anonymous visitors are sent to the portal
login, a logged-in user who is not a partner user gets 404, and only GET (and HEAD) is
answered (405 otherwise). The partner comes from the logged-in user, never from the URL, and
objects are looked up in the partner's own querysets, so another partner's id answers 404.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import AccessMixin
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.generic import TemplateView

from loyalty import dates
from loyalty.spreadsheets import escape_cell
from partners import exports
from partners.portal import selectors
from partners.portal.forms import (
    PortalAuthenticationForm,
    PortalPasswordResetForm,
    TransactionFilterForm,
)

CSV_CHUNK = 500


class PartnerPortalMixin(AccessMixin):
    """Resolves `self.partner` from the logged-in partner user: the one rule of isolation."""

    http_method_names = ["get", "head"]
    login_url = reverse_lazy("portal:login")
    nav = ""

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.partner = selectors.partner_for_user(request.user)
        if self.partner is None:
            raise Http404("No partner portal for this account.")
        self.tz_name = selectors.partner_timezone(self.partner)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(partner=self.partner, nav=self.nav, portal_timezone=self.tz_name)
        return context


class DashboardView(PartnerPortalMixin, TemplateView):
    template_name = "portal/dashboard.html"
    nav = "dashboard"

    def get_context_data(self, **kwargs):
        activity = selectors.partner_activity(self.partner, now=timezone.now())
        current = activity.current
        zero = dict.fromkeys(activity.currencies, 0)
        return super().get_context_data(
            activity=activity,
            month=current,
            issued=activity.points({**zero, **current.issued}),
            redeemed=activity.points({**zero, **current.redeemed}),
            amounts=[(money, current.amount.get(money, 0)) for money in activity.money_currencies],
            chart=activity.chart(),
            terms=[
                (
                    term,
                    _plain(term.fee_per_point_issued),
                    _plain(term.reimbursement_per_point_redeemed),
                )
                for term in selectors.partner_terms(self.partner)
            ],
            **kwargs,
        )


def _plain(value: Decimal) -> str:
    """0.008000 -> "0.008", 0E-6 -> "0": a rate as people write it."""
    return f"{value.normalize():f}"


class TransactionFilterMixin:
    """The transaction list's filters, shared by the page and its CSV export."""

    def filtered_transactions(self):
        form = TransactionFilterForm(self.request.GET or None)
        queryset = selectors.partner_transactions(self.partner)
        if form.is_bound and form.is_valid():
            start, end = form.cleaned_data["date_from"], form.cleaned_data["date_to"]
            if start:
                queryset = queryset.filter(occurred_at__gte=dates.start_of_day(start, self.tz_name))
            if end:
                queryset = queryset.filter(
                    occurred_at__lt=dates.start_of_day(end + dt.timedelta(days=1), self.tz_name)
                )
            if form.cleaned_data["type"]:
                queryset = queryset.filter(type=form.cleaned_data["type"])
        elif form.is_bound:
            queryset = queryset.none()
        return form, queryset

    def rows(self, transactions):
        """Display rows: the member's number masked, the partner's amount and points."""
        points = selectors.partner_points_by_transaction(
            self.partner, [txn.pk for txn in transactions]
        )
        return [
            {
                "txn": txn,
                "occurred": timezone.localtime(txn.occurred_at, dates.zone(self.tz_name)),
                "member": selectors.mask_membership_number(txn.member.membership_number),
                "points": points.get(txn.pk, []),
            }
            for txn in transactions
        ]


class TransactionListView(PartnerPortalMixin, TransactionFilterMixin, TemplateView):
    template_name = "portal/transactions.html"
    nav = "transactions"

    def get_context_data(self, **kwargs):
        form, queryset = self.filtered_transactions()
        page = Paginator(queryset, settings.TESSERA_PORTAL_PAGE_SIZE).get_page(
            self.request.GET.get("page")
        )
        filters = {key: value for key, value in self.request.GET.items() if key != "page" and value}
        return super().get_context_data(
            form=form,
            page=page,
            rows=self.rows(list(page.object_list)),
            query=urlencode(filters),
            **kwargs,
        )


class TransactionExportView(PartnerPortalMixin, TransactionFilterMixin, TemplateView):
    """The filtered list as CSV, streamed, every cell escaped against spreadsheet formulas."""

    HEADER = [
        "occurred_at",
        "external_id",
        "type",
        "subtype",
        "channel",
        "member",
        "amount",
        "money_currency",
        "points",
        "points_currency",
        "status",
    ]

    def get(self, request, *args, **kwargs):
        _, queryset = self.filtered_transactions()
        response = StreamingHttpResponse(self._lines(queryset), content_type="text/csv")
        stamp = timezone.localdate().isoformat()
        response["Content-Disposition"] = (
            f'attachment; filename="{self.partner.code}-transactions-{stamp}.csv"'
        )
        return response

    def _lines(self, queryset):
        buffer = _Echo()
        writer = csv.writer(buffer)
        yield writer.writerow(self.HEADER)
        chunk = []
        for txn in queryset.iterator(chunk_size=CSV_CHUNK):
            chunk.append(txn)
            if len(chunk) == CSV_CHUNK:
                yield from self._chunk(writer, chunk)
                chunk = []
        yield from self._chunk(writer, chunk)

    def _chunk(self, writer, transactions):
        for row in self.rows(transactions):
            txn = row["txn"]
            values = [
                row["occurred"].isoformat(),
                txn.external_id,
                txn.type,
                txn.subtype,
                txn.channel,
                row["member"],
                "" if txn.partner_amount is None else f"{txn.partner_amount:.2f}",
                txn.money,
                ";".join(str(points.value) for points in row["points"]),
                ";".join(points.currency.code for points in row["points"]),
                txn.status,
            ]
            yield writer.writerow([escape_cell(str(value)) for value in values])


class _Echo:
    def write(self, value):
        return value


class TransactionDetailView(PartnerPortalMixin, TransactionFilterMixin, TemplateView):
    template_name = "portal/transaction.html"
    nav = "transactions"

    def get_context_data(self, **kwargs):
        txn = get_object_or_404(selectors.partner_transactions(self.partner), pk=kwargs["pk"])
        return super().get_context_data(
            row=self.rows([txn])[0],
            lines=selectors.partner_transaction_lines(self.partner, txn),
            **kwargs,
        )


class ProductListView(PartnerPortalMixin, TemplateView):
    template_name = "portal/products.html"
    nav = "products"

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            products=selectors.partner_products(self.partner),
            categories=selectors.partner_categories(self.partner),
            **kwargs,
        )


class PromotionListView(PartnerPortalMixin, TemplateView):
    template_name = "portal/promotions.html"
    nav = "promotions"

    def get_context_data(self, **kwargs):
        return super().get_context_data(shares=selectors.partner_promotions(self.partner), **kwargs)


class RuleListView(PartnerPortalMixin, TemplateView):
    template_name = "portal/rules.html"
    nav = "rules"

    def get_context_data(self, **kwargs):
        rules = [
            {"rule": rule, "award": _award_text(rule.award or {}), "window": self._window(rule)}
            for rule in selectors.partner_earning_rules(self.partner)
        ]
        return super().get_context_data(rules=rules, **kwargs)

    def _window(self, rule) -> str:
        if not rule.active_from and not rule.active_to:
            return "always"
        zone = dates.zone(self.tz_name)
        start = timezone.localtime(rule.active_from, zone).date() if rule.active_from else "…"
        end = timezone.localtime(rule.active_to, zone).date() if rule.active_to else "…"
        return f"{start} – {end}"


def _award_text(award: dict) -> str:
    """What a rule gives, in a partner's words (the portal shows no rule JSON)."""
    kind, currency = award.get("type", ""), award.get("currency", "")
    if kind == "per_amount":
        return f"{award.get('points')} {currency} per {award.get('per')} spent"
    if kind == "fixed":
        return f"{award.get('points')} {currency}"
    if kind == "multiplier":
        return f"×{award.get('factor')} {currency}"
    return kind or "–"


# --- login, logout and passwords: Django's views with the portal's templates ---------------


class PortalLoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    authentication_form = PortalAuthenticationForm
    redirect_authenticated_user = False
    next_page = reverse_lazy("portal:dashboard")

    def get_default_redirect_url(self):
        return str(self.next_page)


class PortalLogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("portal:login")


class PortalPasswordResetView(auth_views.PasswordResetView):
    template_name = "portal/password_reset.html"
    email_template_name = "portal/email/password_reset.txt"
    subject_template_name = "portal/email/password_reset_subject.txt"
    form_class = PortalPasswordResetForm
    success_url = reverse_lazy("portal:password_reset_done")


class PortalPasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "portal/password_reset_done.html"


class PortalPasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "portal/password_reset_confirm.html"
    success_url = reverse_lazy("portal:password_reset_complete")

    def get_user(self, uidb64):
        """Partner users only: a back-office account's password is never set through the
        portal, whatever link is presented."""
        user = super().get_user(uidb64)
        if user is not None and selectors.partner_for_user(user) is None:
            return None
        return user


class PortalPasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "portal/password_reset_complete.html"


class StatementListView(PartnerPortalMixin, TemplateView):
    template_name = "portal/statements.html"
    nav = "statements"

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            statements=selectors.partner_statements(self.partner), **kwargs
        )


class StatementDownloadView(PartnerPortalMixin, TemplateView):
    """One of the partner's statements as CSV or XLSX (the files the admin serves too)."""

    FORMATS = {
        "csv": (exports.statement_csv, "text/csv; charset=utf-8"),
        "xlsx": (
            exports.statement_xlsx,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    }

    def get(self, request, *args, pk, fmt, **kwargs):
        if fmt not in self.FORMATS:
            raise Http404("No such format.")
        statement = get_object_or_404(selectors.partner_statements(self.partner), pk=pk)
        render, content_type = self.FORMATS[fmt]
        response = HttpResponse(render(statement), content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="{exports.statement_filename(statement, fmt)}"'
        )
        return response

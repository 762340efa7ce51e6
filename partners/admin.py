"""Partners, their participation in programs (terms), the products and categories that
attribute transactions to them, prepaid packs (top-up page, low-pack warning) and the closed
monthly statements (read-only, with CSV and XLSX downloads)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from loyalty.admin.common import ServiceFormAdminMixin, ServiceRefused
from loyalty.exceptions import LoyaltyError
from loyalty.forms import ServiceErrorMixin, add_service_error
from partners.exports import statement_csv, statement_filename, statement_xlsx
from partners.models import (
    Partner,
    PartnerCategory,
    PartnerProduct,
    PartnerProgram,
    PartnerStatement,
    PartnerUser,
    PrepaidTopUp,
    StatementLine,
)
from partners.services.partner_users import (
    partner_user_create,
    partner_user_delete,
    password_set_path,
)
from partners.services.prepaid import prepaid_topup


class PartnerProgramInline(admin.TabularInline):
    model = PartnerProgram
    extra = 0
    autocomplete_fields = ("program",)
    fields = (
        "program",
        "fee_per_point_issued",
        "reimbursement_per_point_redeemed",
        "billing",
        "prepaid_points_balance",
        "prepaid_alert_threshold",
    )
    # The prepaid balance is drawn down by partner accruals; it is never typed in.
    readonly_fields = ("prepaid_points_balance",)


class PartnerProductInline(admin.TabularInline):
    model = PartnerProduct
    extra = 0
    fields = ("program", "sku", "name")
    autocomplete_fields = ("program",)


class PartnerCategoryInline(admin.TabularInline):
    model = PartnerCategory
    extra = 0
    fields = ("program", "category")
    autocomplete_fields = ("program",)


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    # Staff limited to some programs see the partners of those programs (program_scope).
    program_path = "memberships__program"
    list_display = (
        "code",
        "name",
        "kind",
        "status",
        "program_codes",
        "contact_name",
        "contact_email",
        "created_at",
    )
    list_filter = ("kind", "status", "memberships__program")
    search_fields = ("code", "name", "contact_name", "contact_email")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("code", "name", "kind", "status")}),
        ("Contact", {"fields": ("contact_name", "contact_email", "contact_phone")}),
        ("History", {"fields": ("created_at",)}),
    )
    inlines = [PartnerProgramInline, PartnerProductInline, PartnerCategoryInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "memberships",
                    queryset=PartnerProgram.objects.select_related("program").order_by(
                        "program__code"
                    ),
                )
            )
        )

    @admin.display(description="programs")
    def program_codes(self, obj: Partner) -> str:
        return ", ".join(m.program.code for m in obj.memberships.all()) or "-"

    def save_formset(self, request, form, formset, change):
        """Save only the columns an inline form changed, so saving a partner never writes back
        a stale copy of a counter (the prepaid balance) that services update meanwhile."""
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            obj.delete()
        changed = {id(obj): fields for obj, fields in formset.changed_objects}
        for obj in instances:
            if obj.pk and id(obj) in changed:
                obj.save(update_fields=[f for f in changed[id(obj)] if f in _concrete(obj)])
            else:
                obj.save()
        formset.save_m2m()


def _concrete(obj) -> set[str]:
    return {f.name for f in obj._meta.concrete_fields}


class PrepaidTopUpInline(admin.TabularInline):
    """The pack's top-ups, newest first (history: read-only)."""

    model = PrepaidTopUp
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("created_at", "points", "balance_after", "reference", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PrepaidTopUpForm(forms.Form):
    points = forms.IntegerField(
        min_value=1, help_text="Points bought, in the smallest unit of the program's points."
    )
    reference = forms.CharField(
        max_length=200, help_text="What pays for them: an invoice or order number."
    )


@admin.register(PartnerProgram)
class PartnerProgramAdmin(admin.ModelAdmin):
    list_display = (
        "partner",
        "program",
        "billing",
        "fee_per_point_issued",
        "reimbursement_per_point_redeemed",
        "prepaid_pack",
        "prepaid_alert_threshold",
    )
    list_filter = ("billing", "program")
    search_fields = ("partner__code", "partner__name", "program__code")
    list_select_related = ("partner", "program")
    autocomplete_fields = ("partner", "program")
    readonly_fields = ("prepaid_points_balance", "prepaid_alert_sent", "top_up")
    inlines = [PrepaidTopUpInline]

    @admin.display(description="prepaid pack", ordering="prepaid_points_balance")
    def prepaid_pack(self, obj: PartnerProgram):
        if not obj.prepaid:
            return "-"
        if obj.prepaid_low:
            return format_html(
                '<strong style="color: #ba2121">⚠ {} (low)</strong>', obj.prepaid_points_balance
            )
        return obj.prepaid_points_balance

    @admin.display(description="top up")
    def top_up(self, obj: PartnerProgram):
        if obj.pk is None or not obj.prepaid:
            return "-"
        url = reverse("admin:partners_partnerprogram_topup", args=[obj.pk])
        return format_html('<a class="button" href="{}">Top up the pack…</a>', url)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.topup_view)
        return [
            path("<path:object_id>/topup/", view, name="{}_{}_topup".format(*info)),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        terms = self.get_object(request, unquote(object_id)) if request.method == "GET" else None
        if terms is not None and terms.prepaid_low:
            self.message_user(request, _low_pack_message(terms), messages.WARNING)
        return super().change_view(request, object_id, form_url, extra_context)

    def topup_view(self, request, object_id):
        """Add points to a prepaid pack through `prepaid_topup`."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        terms = self.get_object(request, unquote(object_id))
        if terms is None:
            raise Http404("No such partner terms.")
        form = PrepaidTopUpForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                topup = prepaid_topup(
                    terms=terms,
                    points=form.cleaned_data["points"],
                    reference=form.cleaned_data["reference"],
                    actor=request.user.get_username(),
                )
            except LoyaltyError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                add_service_error(form, exc, message=False)
            else:
                self.log_change(request, terms, f"Topped up {topup.points} points.")
                self.message_user(
                    request,
                    f"Added {topup.points} points to the pack of {terms.partner.code}: "
                    f"{topup.balance_after} points now.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:partners_partnerprogram_change", args=[terms.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Top up the prepaid pack",
            "subtitle": str(terms),
            "opts": self.opts,
            "form": form,
            "original": terms,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/partners/partnerprogram/topup.html", context)

    def save_model(self, request, obj, form, change):
        if change:
            fields = [f for f in form.changed_data if f in _concrete(obj)]
            if fields:
                obj.save(update_fields=fields)
            return
        obj.save()


def _low_pack_message(terms: PartnerProgram) -> str:
    if terms.prepaid_points_balance == 0:
        return (
            f"The prepaid pack of {terms.partner.code} is empty: its transactions are refused "
            "until it is topped up."
        )
    return (
        f"The prepaid pack of {terms.partner.code} is low: {terms.prepaid_points_balance} "
        f"points, under the alert threshold of {terms.prepaid_alert_threshold}."
    )


@admin.register(PartnerProduct)
class PartnerProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "partner", "program")
    list_filter = ("program", "partner")
    search_fields = ("sku", "name", "partner__code")
    list_select_related = ("partner", "program")
    autocomplete_fields = ("partner", "program")


@admin.register(PartnerCategory)
class PartnerCategoryAdmin(admin.ModelAdmin):
    list_display = ("category", "partner", "program")
    list_filter = ("program", "partner")
    search_fields = ("category", "partner__code")
    list_select_related = ("partner", "program")
    autocomplete_fields = ("partner", "program")


# --- statements ------------------------------------------------------------------------------


class StatementLineInline(admin.TabularInline):
    model = StatementLine
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("position", "description", "kind", "period", "count", "points", "money")
    readonly_fields = fields
    ordering = ("position",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("currency", "statement")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


STATEMENT_FORMATS = {
    "csv": (statement_csv, "text/csv; charset=utf-8"),
    "xlsx": (
        statement_xlsx,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
}


@admin.register(PartnerStatement)
class PartnerStatementAdmin(admin.ModelAdmin):
    """Closed statements: history, never edited (a correction lands on a later statement)."""

    list_display = (
        "month_label",
        "partner",
        "program",
        "billing",
        "transactions",
        "points_issued",
        "points_redeemed",
        "fees",
        "reimbursements",
        "joint_promotion_costs",
        "net_due",
        "downloads",
    )
    list_filter = ("program", "billing", "month", "partner")
    search_fields = ("partner__code", "partner__name")
    list_select_related = ("partner", "program")
    date_hierarchy = "month"
    ordering = ("-month", "partner__code")
    fieldsets = (
        (None, {"fields": ("partner", "program", "month", "status", "billing", "downloads")}),
        (
            "Totals",
            {
                "fields": (
                    "transactions",
                    "amount",
                    "points_issued",
                    "points_returned",
                    "points_redeemed",
                    "prepaid_drawn",
                    "fees",
                    "reimbursements",
                    "joint_promotion_costs",
                    "net_due",
                    "money_currency",
                )
            },
        ),
        ("History", {"fields": ("cutoff", "created_at")}),
    )
    readonly_fields = (
        "partner",
        "program",
        "month",
        "status",
        "billing",
        "downloads",
        "transactions",
        "amount",
        "points_issued",
        "points_returned",
        "points_redeemed",
        "prepaid_drawn",
        "fees",
        "reimbursements",
        "joint_promotion_costs",
        "net_due",
        "money_currency",
        "cutoff",
        "created_at",
    )
    inlines = [StatementLineInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="month", ordering="month")
    def month_label(self, obj: PartnerStatement) -> str:
        return f"{obj.month:%Y-%m}"

    @admin.display(description="download")
    def downloads(self, obj: PartnerStatement):
        if obj.pk is None:
            return "-"
        return format_html(
            '<a href="{}">CSV</a> · <a href="{}">XLSX</a>',
            reverse("admin:partners_partnerstatement_download", args=[obj.pk, "csv"]),
            reverse("admin:partners_partnerstatement_download", args=[obj.pk, "xlsx"]),
        )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.download_view)
        return [
            path(
                "<path:object_id>/download/<str:fmt>/",
                view,
                name="{}_{}_download".format(*info),
            ),
            *super().get_urls(),
        ]

    def download_view(self, request, object_id, fmt):
        if not self.has_view_permission(request):
            raise PermissionDenied
        statement = self.get_object(request, unquote(object_id))
        if statement is None or fmt not in STATEMENT_FORMATS:
            raise Http404("No such statement or format.")
        render, content_type = STATEMENT_FORMATS[fmt]
        response = HttpResponse(render(statement), content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="{statement_filename(statement, fmt)}"'
        )
        return response


# --- partner portal users (docs/portal.md) ---------------------------------------------------


class PartnerUserInline(admin.TabularInline):
    """The partner's portal logins, read-only: they are added through the partner user form
    (which calls `partner_user_create`), never typed into this table."""

    model = PartnerUser
    extra = 0
    fields = ("username", "email", "active", "last_login", "created_at", "created_by")
    readonly_fields = fields
    show_change_link = True
    verbose_name_plural = "partner portal users (add them from the Partner users page)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    @admin.display(description="username")
    def username(self, obj: PartnerUser) -> str:
        return obj.user.get_username()

    @admin.display(description="e-mail")
    def email(self, obj: PartnerUser) -> str:
        return obj.user.email

    @admin.display(description="active", boolean=True)
    def active(self, obj: PartnerUser) -> bool:
        return obj.user.is_active

    @admin.display(description="last login")
    def last_login(self, obj: PartnerUser):
        return obj.user.last_login


PartnerAdmin.inlines = [*PartnerAdmin.inlines, PartnerUserInline]


class PartnerUserAddForm(ServiceErrorMixin, forms.ModelForm):
    """Shape only: `partner_user_create` validates the username, e-mail and password."""

    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False, label="E-mail")
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave it empty to get a one-time link where the user chooses a password.",
    )

    class Meta:
        model = PartnerUser
        fields = ("partner",)


@admin.register(PartnerUser)
class PartnerUserAdmin(ServiceFormAdminMixin, admin.ModelAdmin):
    program_path = "partner__memberships__program"  # (program_scope)
    """Logins of the partner portal. Adding one calls `partner_user_create` (never staff, so no
    admin access); they are not edited here (the user changes their own password)."""

    list_display = ("username", "partner", "email", "active", "last_login", "created_at")
    list_filter = ("partner", "user__is_active")
    search_fields = ("user__username", "user__email", "partner__code", "partner__name")
    list_select_related = ("user", "partner")
    autocomplete_fields = ("partner",)
    readonly_fields = ("partner", "username", "email", "active", "last_login", "created_at")
    fields = readonly_fields + ("created_by",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = PartnerUserAddForm
            kwargs["fields"] = ("partner", "username", "email", "password")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("partner", "username", "email", "password")
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.fields

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            created = partner_user_create(
                partner=data["partner"],
                username=data["username"],
                email=data.get("email") or "",
                password=data.get("password") or None,
                actor=request.user.get_username(),
            )
        except LoyaltyError as exc:
            raise ServiceRefused(exc) from exc
        for field in PartnerUser._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        if not data.get("password"):
            link = request.build_absolute_uri(password_set_path(created))
            self.message_user(
                request,
                f"Send {created.user.get_username()} this one-time link to choose a password "
                f"(valid for a few days, until used): {link}",
                messages.WARNING,
            )

    def delete_model(self, request, obj):
        partner_user_delete(partner_user=obj, actor=request.user.get_username())

    def delete_queryset(self, request, queryset):
        for partner_user in queryset:
            partner_user_delete(partner_user=partner_user, actor=request.user.get_username())

    @admin.display(description="username", ordering="user__username")
    def username(self, obj: PartnerUser) -> str:
        return obj.user.get_username()

    @admin.display(description="e-mail", ordering="user__email")
    def email(self, obj: PartnerUser) -> str:
        return obj.user.email

    @admin.display(description="active", boolean=True)
    def active(self, obj: PartnerUser) -> bool:
        return obj.user.is_active

    @admin.display(description="last login", ordering="user__last_login")
    def last_login(self, obj: PartnerUser):
        return obj.user.last_login

"""The journal (transactions and their lines) and the ledger (entries, buckets, allocations,
balances): read-only for everyone, superusers included; corrections are new transactions."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Sum
from django.utils.html import format_html_join

from loyalty.admin.common import (
    CurrencyCodeFilter,
    MemberColumnsMixin,
    ReadOnlyAdminMixin,
    html_table,
    link,
    short_datetime,
    signed_units,
    units,
    units_column,
)
from loyalty.admin_exports import export_ledger_csv, export_transactions_csv
from loyalty.models import (
    Balance,
    Bucket,
    BucketAllocation,
    Currency,
    LedgerEntry,
    Transaction,
    TransactionLine,
)


class TransactionLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TransactionLine
    extra = 0
    fields = ("line_number", "sku", "category", "quantity", "unit_price", "line_amount", "partner")
    readonly_fields = fields

    @admin.display(description="amount")
    def line_amount(self, obj: TransactionLine):
        return obj.amount

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("partner")


class LedgerEntryInline(MemberColumnsMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = LedgerEntry
    fk_name = "transaction"
    extra = 0
    show_change_link = True
    verbose_name_plural = "ledger entries written"
    fields = (
        "kind",
        "member_number",
        "currency_code",
        "signed_points",
        "pool",
        "rule_link",
        "partner",
        "available_at",
        "expires_on",
        "note",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("member", "currency", "rule", "partner")
            .order_by("id")
        )

    @admin.display(description="points")
    def signed_points(self, obj: LedgerEntry) -> str:
        return signed_units(obj.points, obj.currency)

    @admin.display(description="rule")
    def rule_link(self, obj: LedgerEntry):
        return link(obj.rule, obj.rule.code) if obj.rule else "-"


@admin.register(Transaction)
class TransactionAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = [export_transactions_csv]
    list_display = (
        "external_id",
        "occurred",
        "member_number",
        "type",
        "subtype",
        "status",
        "channel",
        "amount_display",
        "ledger_points",
        "partner_code",
        "program_code",
    )
    list_filter = (
        "type",
        ("subtype", admin.AllValuesFieldListFilter),
        "status",
        "channel",
        "program",
        "partner",
    )
    search_fields = ("external_id", "member__membership_number")
    list_select_related = ("member", "program", "partner", "points_currency")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    inlines = [TransactionLineInline, LedgerEntryInline]
    fieldsets = (
        (None, {"fields": ("program", "external_id", "member", "counterparty", "status")}),
        ("What", {"fields": ("type", "subtype", "event", "occurred_at", "channel", "partner")}),
        ("Money", {"fields": ("amount", "money_currency")}),
        (
            "Points",
            {"fields": ("points_display", "points_currency", "expires_on", "unrecovered_points")},
        ),
        ("Reason", {"fields": ("reason", "rejection_reason", "original", "reversals_list")}),
        ("Provenance", {"fields": ("actor", "created_at", "attributes", "payload")}),
    )
    readonly_fields = ("points_display", "reversals_list", "created_at")

    def get_changelist_instance(self, request):
        """The points each listed transaction wrote, per currency: one aggregate query over
        the ledger entries of the page's transactions."""
        changelist = super().get_changelist_instance(request)
        txns = {t.pk: t for t in changelist.result_list}
        for txn in txns.values():
            txn._ledger_points = []
        sums = (
            LedgerEntry.objects.filter(transaction_id__in=txns)
            .values("transaction_id", "currency_id")
            .annotate(points=Sum("points"))
            .order_by("transaction_id", "currency__code")
        )
        programs = {t.program_id for t in txns.values()}
        currencies = {c.pk: c for c in Currency.objects.filter(program_id__in=programs)}
        for row in sums:
            txns[row["transaction_id"]]._ledger_points.append(
                (row["points"], currencies[row["currency_id"]])
            )
        return changelist

    @admin.display(description="member", ordering="member__membership_number")
    def member_number(self, obj: Transaction):
        """A recorded refusal of an unknown member has none: the number it was posted for."""
        if obj.member_id is None:
            return f"{obj.payload.get('member', '')} (unknown)"
        return super().member_number(obj)

    @admin.display(description="occurred at", ordering="occurred_at")
    def occurred(self, obj: Transaction) -> str:
        return short_datetime(obj.occurred_at)

    @admin.display(description="partner", ordering="partner__code")
    def partner_code(self, obj: Transaction) -> str:
        return obj.partner.code if obj.partner_id else "-"

    @admin.display(description="program", ordering="program__code")
    def program_code(self, obj: Transaction) -> str:
        return obj.program.code

    @admin.display(description="points")
    def ledger_points(self, obj: Transaction) -> str:
        """What the transaction's entries add up to: the points it earned (or took)."""
        sums = getattr(obj, "_ledger_points", [])
        return ", ".join(f"{signed_units(p, c)} {c.code}" for p, c in sums) or "-"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("member", "program", "partner", "points_currency", "original")
        )

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Transaction) -> str:
        return f"{obj.amount} {obj.money_currency}".strip() if obj.amount is not None else "-"

    @admin.display(description="points", ordering="points")
    def points_display(self, obj: Transaction) -> str:
        if obj.points is None:
            return "-"
        return f"{units(obj.points, obj.points_currency)} {obj.points_currency.code}"

    @admin.display(description="reversed by")
    def reversals_list(self, obj: Transaction) -> str:
        reversals = list(obj.reversals.order_by("occurred_at", "id"))
        if not reversals:
            return "-"
        return format_html_join(", ", "{}", ((link(r, r.external_id),) for r in reversals))


@admin.register(TransactionLine)
class TransactionLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("transaction", "line_number", "sku", "category", "quantity", "unit_price")
    search_fields = ("transaction__external_id", "sku", "category")
    list_select_related = ("transaction",)
    list_filter = ("partner",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = [export_ledger_csv]
    list_display = (
        "id",
        "created_at",
        "member_number",
        "kind",
        "currency_code",
        "signed_points",
        "pool",
        "transaction_link",
        "rule_link",
        "partner",
        "available_at",
        "expires_on",
    )
    list_filter = ("kind", "pool", CurrencyCodeFilter, "program", "partner")
    search_fields = ("member__membership_number", "transaction__external_id", "note")
    list_select_related = ("member", "currency", "transaction", "rule", "partner")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("program", "member", "currency", "signed_points", "kind", "pool")}),
        ("Provenance", {"fields": ("transaction", "rule", "partner", "reverses", "note")}),
        ("Dates", {"fields": ("created_at", "available_at", "expires_on")}),
        ("Buckets", {"fields": ("bucket_link", "allocations_table")}),
    )
    readonly_fields = ("signed_points", "created_at", "bucket_link", "allocations_table")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("member", "currency", "transaction", "rule", "partner", "program")
        )

    @admin.display(description="points", ordering="points")
    def signed_points(self, obj: LedgerEntry) -> str:
        return signed_units(obj.points, obj.currency)

    @admin.display(description="transaction")
    def transaction_link(self, obj: LedgerEntry):
        return link(obj.transaction, obj.transaction.external_id) if obj.transaction else "-"

    @admin.display(description="rule")
    def rule_link(self, obj: LedgerEntry):
        return link(obj.rule, obj.rule.code) if obj.rule else "-"

    @admin.display(description="bucket (credit)")
    def bucket_link(self, obj: LedgerEntry):
        bucket = Bucket.objects.filter(entry=obj).first()
        return link(bucket) if bucket else "-"

    @admin.display(description="buckets consumed or given back")
    def allocations_table(self, obj: LedgerEntry) -> str:
        allocations = obj.allocations.select_related("bucket__currency").order_by("id")
        return html_table(
            ["bucket", "points", "bucket expires on"],
            (
                (
                    link(a.bucket),
                    signed_units(a.points, a.bucket.currency),
                    a.bucket.expires_on or "-",
                )
                for a in allocations
            ),
        )


@admin.register(Bucket)
class BucketAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "member_number",
        "currency_code",
        "points_display",
        "remaining_display",
        "occurred_at",
        "available_at",
        "released",
        "expires_on",
        "expired",
    )
    list_filter = ("released", "expired", CurrencyCodeFilter)
    search_fields = ("member__membership_number",)
    list_select_related = ("member", "currency")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    readonly_fields = ("allocations_table",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("member", "currency", "entry")

    points_display = units_column("points")

    remaining_display = units_column("remaining")

    @admin.display(description="allocations")
    def allocations_table(self, obj: Bucket) -> str:
        allocations = obj.allocations.select_related("entry__transaction").order_by("id")
        return html_table(
            ["entry", "kind", "points", "transaction"],
            (
                (
                    link(a.entry, a.entry.pk),
                    a.entry.get_kind_display(),
                    signed_units(a.points, obj.currency),
                    link(a.entry.transaction) if a.entry.transaction else "-",
                )
                for a in allocations
            ),
        )


@admin.register(BucketAllocation)
class BucketAllocationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "entry", "bucket", "points")
    search_fields = ("bucket__member__membership_number",)
    list_select_related = ("entry__currency", "bucket")


@admin.register(Balance)
class BalanceAdmin(MemberColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The stored cache (smallest units shown in currency units). The member page shows the
    balance "as of now", which also counts releases and expiries not yet written."""

    list_display = (
        "member_number",
        "currency_code",
        "available_display",
        "pending_display",
        "debt_display",
        "lifetime_earned_display",
        "redeemed_display",
        "expired_display",
        "updated_at",
    )
    list_filter = (CurrencyCodeFilter, "member__program")
    search_fields = ("member__membership_number", "member__email")
    list_select_related = ("member", "currency")
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("member", "currency")

    available_display = units_column("available")

    pending_display = units_column("pending")

    debt_display = units_column("debt")

    lifetime_earned_display = units_column("lifetime_earned")

    redeemed_display = units_column("redeemed")

    expired_display = units_column("expired")

"""Earning rules: edited through a form with a field per condition and award setting, saved by
`loyalty.services.earning_rules` (a new rule is a draft), and tried from the rule's page before
it goes live: "Simulate" (a sample transaction, with each rule's "why not"), "What-if" (the
rule replayed over a past window: points, members reached, money value), then "Activate".
Nothing on these pages writes but the save and the activate/deactivate buttons."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from loyalty import dates
from loyalty.admin.common import ServiceFormAdminMixin, ServiceRefused, admin_url
from loyalty.exceptions import LoyaltyError
from loyalty.forms import (
    EarningRuleForm,
    SimulationForm,
    SimulationLineFormSet,
    WhatIfForm,
    add_service_error,
)
from loyalty.models import EarningRule
from loyalty.services.earning_rules import (
    earning_rule_activate,
    earning_rule_create,
    earning_rule_deactivate,
    earning_rule_simulate,
    earning_rule_update,
)
from loyalty.services.requests import LineRequest, TransactionRequest
from loyalty.services.simulation import rule_what_if

CONDITION_FIELDS = (
    "subtypes",
    "channels",
    "weekdays",
    ("events", "partners"),
    ("skus", "categories"),
    ("tiers", "segments"),
    "min_amount",
    "attributes",
)
AWARD_FIELDS = (
    "award_type",
    "award_currency",
    ("award_points", "award_per"),
    "award_factor",
    "award_rounding",
    "max_points_per_transaction",
    ("max_per_member_per_day", "max_per_member_per_month"),
)


def active_window(rule: EarningRule) -> str:
    if not rule.active_from and not rule.active_to:
        return "always"
    start = rule.active_from.strftime("%Y-%m-%d %H:%M") if rule.active_from else "…"
    end = rule.active_to.strftime("%Y-%m-%d %H:%M") if rule.active_to else "…"
    return f"{start} – {end}"


class EarningRuleInline(admin.TabularInline):
    """The program's rules, read-only: a rule is edited, tried and activated on its page."""

    model = EarningRule
    extra = 0
    show_change_link = True
    fields = ("code", "name", "status", "priority", "exclusive", "award_summary", "window")
    readonly_fields = fields
    verbose_name_plural = "earning rules (edit, simulate and activate each on its page)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="award")
    def award_summary(self, obj: EarningRule) -> str:
        return award_summary(obj)

    @admin.display(description="active window")
    def window(self, obj: EarningRule) -> str:
        return active_window(obj)


def award_summary(rule: EarningRule) -> str:
    award = rule.award or {}
    kind, currency = award.get("type", "-"), award.get("currency", "")
    if kind == "per_amount":
        return f"{award.get('points')} {currency} per {award.get('per')}"
    if kind == "fixed":
        return f"{award.get('points')} {currency}"
    if kind == "multiplier":
        return f"×{award.get('factor')} {currency}"
    return kind


@admin.register(EarningRule)
class EarningRuleAdmin(ServiceFormAdminMixin, admin.ModelAdmin):
    form = EarningRuleForm
    change_form_template = "admin/loyalty/earningrule/change_form.html"
    list_display = (
        "code",
        "name",
        "program",
        "priority",
        "exclusive",
        "status",
        "active_window",
        "award_type",
        "award_currency",
        "award_text",
        "updated_at",
    )
    list_filter = ("program", "status", "exclusive")
    search_fields = ("code", "name", "description")
    list_select_related = ("program",)
    ordering = ("program", "-priority", "code")
    fieldsets = (
        (None, {"fields": ("program", "code", "name", "description")}),
        (
            "Conditions",
            {
                "fields": CONDITION_FIELDS,
                "description": "Every condition given must hold; an empty one does not restrict.",
            },
        ),
        ("Award", {"fields": AWARD_FIELDS}),
        (
            "Order and timing",
            {"fields": (("priority", "exclusive"), "escrow_days", ("active_from", "active_to"))},
        ),
        ("Definition the engine reads", {"fields": ("definition",), "classes": ["collapse"]}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # no JSON or history before the rule exists
            hidden = ("Definition the engine reads", "History")
            return [(name, options) for name, options in self.fieldsets if name not in hidden]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("program", "definition", "created_at", "updated_at")

    @admin.display(description="active window")
    def active_window(self, obj: EarningRule) -> str:
        return active_window(obj)

    @admin.display(description="award")
    def award_type(self, obj: EarningRule) -> str:
        return (obj.award or {}).get("type", "-")

    @admin.display(description="currency")
    def award_currency(self, obj: EarningRule) -> str:
        return (obj.award or {}).get("currency", "-")

    @admin.display(description="gives")
    def award_text(self, obj: EarningRule) -> str:
        return award_summary(obj)

    @admin.display(description="JSON")
    def definition(self, obj: EarningRule) -> str:
        return format_html(
            "<pre>conditions: {}\naward: {}</pre>",
            json.dumps(obj.conditions, indent=1, sort_keys=True),
            json.dumps(obj.award, indent=1, sort_keys=True),
        )

    # -- saving through the service ---------------------------------------------------------

    def save_model(self, request, obj, form, change):
        actor = request.user.get_username()
        try:
            if change:
                rule = earning_rule_update(rule=obj, actor=actor, **form.rule_fields())
            else:
                rule = earning_rule_create(
                    program=form.cleaned_data["program"], actor=actor, **form.rule_fields()
                )
        except LoyaltyError as exc:
            raise ServiceRefused(exc) from exc
        for field in EarningRule._meta.concrete_fields:
            setattr(obj, field.attname, getattr(rule, field.attname))
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        """A new rule is a draft: the manager lands on its page, where it is tried and
        activated."""
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request,
            f"Rule {obj.code} saved as a draft: simulate it and run its what-if, then activate it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(admin_url(obj))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {})}
        if object_id is not None:
            extra_context["can_change_status"] = self.has_change_permission(request)
        return super().changeform_view(request, object_id, form_url, extra_context)

    # -- simulate, what-if, activate ---------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/simulate/",
                view(self.simulate_view),
                name="{}_{}_simulate".format(*info),
            ),
            path(
                "<path:object_id>/what-if/",
                view(self.what_if_view),
                name="{}_{}_what_if".format(*info),
            ),
            path(
                "<path:object_id>/activate/",
                view(self.activate_view),
                name="{}_{}_activate".format(*info),
            ),
            path(
                "<path:object_id>/deactivate/",
                view(self.deactivate_view),
                name="{}_{}_deactivate".format(*info),
            ),
            *super().get_urls(),
        ]

    def _rule(self, request, object_id) -> EarningRule:
        rule = self.get_object(request, unquote(object_id))
        if rule is None or not self.has_view_permission(request, rule):
            raise Http404("No such earning rule.")
        return rule

    def simulate_view(self, request, object_id):
        """A sample accrual evaluated with this rule as if it were active (nothing written):
        the points each rule gives and why each other rule does not. Dates are typed and
        shown in the program's timezone, the one its weekdays and days are judged in."""
        rule = self._rule(request, object_id)
        with timezone.override(rule.program.timezone):
            return self._simulate(request, rule).render()

    def _simulate(self, request, rule: EarningRule):
        program = rule.program
        result = None
        if request.method == "POST":
            form = SimulationForm(request.POST)
            lines = SimulationLineFormSet(request.POST, prefix="lines")
            if form.is_valid() and lines.is_valid():
                data = form.cleaned_data
                simulated = TransactionRequest(
                    external_id=f"admin-simulation:{uuid.uuid4()}",
                    member=data["member"].strip(),
                    type="accrual",
                    subtype=data["subtype"],
                    event=data["event"].strip(),
                    occurred_at=data["occurred_at"],
                    amount=data["amount"],
                    currency=program.currency,
                    channel=data["channel"],
                    partner=data["partner"].strip(),
                    lines=tuple(
                        LineRequest(
                            sku=line["sku"].strip(),
                            category=line["category"].strip(),
                            quantity=line["quantity"],
                            unit_price=line["unit_price"],
                        )
                        for line in lines.cleaned_data
                        if line
                    ),
                )
                try:
                    result = earning_rule_simulate(rule=rule, request=simulated)
                except LoyaltyError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                    add_service_error(form, exc, message=False)
        else:
            form = SimulationForm(
                initial={
                    "subtype": "purchase",
                    "occurred_at": timezone.localtime().replace(second=0, microsecond=0),
                    "member": request.GET.get("member", ""),
                }
            )
            lines = SimulationLineFormSet(prefix="lines")
        own = None
        if result is not None:
            own = {
                "awards": [a for a in result.awards if a.rule_code == rule.code],
                "reason": next(
                    (n.reason for n in result.not_fired if n.rule_code == rule.code), ""
                ),
            }
        return self._render(
            request,
            rule,
            "admin/loyalty/earningrule/simulate.html",
            {"title": "Simulate", "form": form, "lines": lines, "result": result, "own": own},
        )

    def what_if_view(self, request, object_id):
        """The rule replayed over past accruals: what it would have cost (nothing written)."""
        rule = self._rule(request, object_id)
        program = rule.program
        result = None
        if "start" in request.GET:
            form = WhatIfForm(request.GET)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    day_after = data["end"] + dt.timedelta(days=1)
                    result = rule_what_if(
                        rule=rule,
                        start=dates.start_of_day(data["start"], program.timezone),
                        end=dates.start_of_day(day_after, program.timezone),
                        include_existing=data["include_existing"],
                    )
                except LoyaltyError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                    add_service_error(form, exc, message=False)
        else:
            today = dates.local_date(timezone.now(), program.timezone)
            form = WhatIfForm(
                initial={
                    "start": today - dt.timedelta(days=30),
                    "end": today - dt.timedelta(days=1),
                    "include_existing": True,
                }
            )
        return self._render(
            request,
            rule,
            "admin/loyalty/earningrule/what_if.html",
            {"title": "What-if", "form": form, "result": result},
        )

    def activate_view(self, request, object_id):
        return self._change_status(request, object_id, earning_rule_activate, "activated")

    def deactivate_view(self, request, object_id):
        return self._change_status(request, object_id, earning_rule_deactivate, "deactivated")

    def _change_status(self, request, object_id, service, done: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        rule = self._rule(request, object_id)
        if not self.has_change_permission(request, rule):
            raise PermissionDenied
        try:
            service(rule=rule, actor=request.user.get_username())
        except LoyaltyError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.log_change(request, rule, f"Rule {done}.")
            self.message_user(request, f"Rule {rule.code} {done}.", messages.SUCCESS)
        return HttpResponseRedirect(admin_url(rule))

    def _render(self, request, rule: EarningRule, template: str, context: dict):
        context = {
            **self.admin_site.each_context(request),
            "subtitle": str(rule),
            "opts": self.opts,
            "original": rule,
            "rule": rule,
            "program": rule.program,
            "media": self.media + context["form"].media,
            "has_view_permission": self.has_view_permission(request),
            "can_change_status": self.has_change_permission(request, rule),
            "change_url": reverse("admin:loyalty_earningrule_change", args=[rule.pk]),
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

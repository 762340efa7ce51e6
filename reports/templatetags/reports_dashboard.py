"""`{% reports_dashboard %}`: the dashboard at the top of the admin's index page."""

from django import template

from reports.dashboard import dashboard_data

register = template.Library()


@register.inclusion_tag("reports/dashboard.html", takes_context=True)
def reports_dashboard(context):
    """Nothing for users without the reports' view permission (support agents)."""
    request = context["request"]
    return {
        "request": request,
        "dashboard": dashboard_data(request),
        "csrf_token": context.get("csrf_token"),
    }

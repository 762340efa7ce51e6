"""The admin's home page in three parts: the working screens a program manager opens every
day first, then the configuration and history screens by application, and last, folded, the
ledger internals (each also reachable from its parent: a member's or a transaction's page
links to its entries, buckets and balances).

Only the index is regrouped; every URL, permission and the sidebar stay Django's.
"""

from __future__ import annotations

# (app label, model name), in the order they are shown.
WORKING_SCREENS = (
    ("loyalty", "Member"),
    ("loyalty", "Transaction"),
    ("loyalty", "EarningRule"),
    ("loyalty", "TierGroup"),
    ("promotions", "Promotion"),
    ("vouchers", "VoucherDefinition"),
    ("vouchers", "Voucher"),
    ("loyalty", "Segment"),
    ("partners", "Partner"),
    ("partners", "PartnerStatement"),
    ("loyalty", "ApprovalRequest"),
    ("loyalty", "ImportJob"),
    ("loyalty", "JobRun"),
    ("django_celery_beat", "PeriodicTask"),
)
LEDGER_INTERNALS = (
    ("loyalty", "LedgerEntry"),
    ("loyalty", "Bucket"),
    ("loyalty", "BucketAllocation"),
    ("loyalty", "TransactionLine"),
    ("loyalty", "Balance"),
)
# Names that say what a screen is for where the model's own name does not.
SCREEN_NAMES = {
    ("loyalty", "ImportJob"): "Imports",
    ("vouchers", "VoucherDefinition"): "Voucher definitions and reward catalogue",
    ("loyalty", "JobRun"): "Job runs",
    ("django_celery_beat", "PeriodicTask"): "Jobs (periodic tasks)",
}


def _section(name: str, label: str, keys, models: dict) -> dict | None:
    """A pseudo-application the admin's `app_list.html` renders like any other."""
    chosen = [models[key] for key in keys if key in models]
    if not chosen:
        return None
    return {"name": name, "app_label": label, "app_url": f"#{label}", "models": chosen}


def index_sections(app_list: list[dict]) -> dict:
    """{"working": [...], "others": [...], "internals": [...]} from the admin's `app_list`
    (only what the user may see is in it, so each part holds only what the user may open)."""
    models = {}
    for app in app_list:
        for model in app["models"]:
            key = (app["app_label"], model["object_name"])
            models[key] = {**model, "name": SCREEN_NAMES.get(key, model["name"])}
    regrouped = set(WORKING_SCREENS) | set(LEDGER_INTERNALS)
    others = []
    for app in app_list:
        rest = [m for m in app["models"] if (app["app_label"], m["object_name"]) not in regrouped]
        if rest:
            others.append({**app, "models": rest})
    working = _section("Working screens", "tessera-working", WORKING_SCREENS, models)
    internals = _section("Ledger internals", "tessera-internals", LEDGER_INTERNALS, models)
    return {
        "working": [working] if working else [],
        "others": others,
        "internals": [internals] if internals else [],
    }

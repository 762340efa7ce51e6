"""The analytics app of the reports section: KPIs and aggregates, arriving with their issue.

It has no models yet. The import history that lived here is `loyalty.models.ImportJob`; this
app's migrations keep the record of that move.
"""

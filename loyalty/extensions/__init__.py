"""Posting extensions that ship with loyalty itself (see `loyalty.pipeline`)."""

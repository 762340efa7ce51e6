"""Writes. One module per capability; admin, API, imports and jobs all call these."""

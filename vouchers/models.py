"""The vouchers app: its models arrive with the issue that builds SPEC's vouchers section."""

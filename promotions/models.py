"""The promotions app: its models arrive with the issue that builds SPEC's promotions section."""

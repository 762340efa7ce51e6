"""The reports app: its models arrive with the issue that builds SPEC's reports section."""

#!/usr/bin/env python
"""Django's command-line utility for Tessera."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from loyalty.audit import acting_as

    # Changes a command makes are in the audit history under its name.
    with acting_as(f"command:{sys.argv[1] if len(sys.argv) > 1 else 'help'}"):
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

"""Settings of the imports that tests run in a subprocess (`manage.py import_csv`): the
project's, with chunks of a few transactions, so that a file of a hundred rows takes many."""

from config.settings import *  # noqa: F403

IMPORT_CHUNK_TRANSACTIONS = 4

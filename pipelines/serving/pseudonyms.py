"""The master key of department pseudonyms, in a table only the administrator reads.

A department that may link records of a person without seeing the ID number
gets a pseudonym instead (``access.pseudonym_expression``): Trino computes it
in the column mask from ``vault.pseudonym_key``, which only the administrator
reads (the mask runs with the administrator's rights). The key is 32 random
bytes, written once with delta-rs into ``<lake>/vault/pseudonym_key``
(folder mode 0700); it never appears in the rules file, a plan or a view.
Replacing it changes every pseudonym: only ever do that on purpose.
"""

from __future__ import annotations

import os
import secrets

from pipelines.lake.delta import append_rows, table_exists
from pipelines.settings import Settings, get_settings, utc_now

KEY_DDL = "name string, secret binary, created_at timestamp"


VAULT_SCHEMA = "vault"              # tables only the administrator reads
PSEUDONYM_KEY_TABLE = "pseudonym_key"


def pseudonym_key_path(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.lake_path(VAULT_SCHEMA, PSEUDONYM_KEY_TABLE)


def ensure_pseudonym_key(settings: Settings | None = None) -> str:
    """Create the key table once (idempotent); returns its path."""

    settings = settings or get_settings()
    path = pseudonym_key_path(settings)
    if table_exists(path):
        return path
    if settings.lake_is_local:
        folder = settings.local_lake_path("vault")
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    append_rows(path, [{"name": "pseudonym", "secret": secrets.token_bytes(32), "created_at": utc_now()}], KEY_DDL)
    return path

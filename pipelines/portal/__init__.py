"""The governance portal (issue 18): a web application on 127.0.0.1 over HTTPS.

Bureau data officers see and answer their own governance issues, governors
see every bureau's, departments browse the data resource catalog. Every
data page reads through Trino **as the logged-in user** (the same users and
passwords as Trino, checked by Trino itself), so the sharing list's rules,
masks and row filters apply unchanged and every page view is in the query
audit: there is no second policy engine here. The catalog's metadata (what
resources and columns exist, their classification and share type) is what
`govlake catalog` shows any department, and is read from the catalog files.

- ``sessions``: server-side sessions and CSRF tokens;
- ``reads``: the SQL each page runs, as the user;
- ``app``: the FastAPI application (Jinja2 templates, one local stylesheet,
  no script and nothing from the internet);
- ``service``: ``govlake portal up|down|status``.
"""

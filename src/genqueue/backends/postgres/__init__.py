"""The PostgreSQL backend (``postgresql://``, ``postgres://``): shared by any number of
machines, in the database an application may already run.

Install with ``pip install 'genqueue[postgres]'`` (psycopg 3 and psycopg-pool).
``backend`` explains the design, ``migrations/`` holds the schema as numbered ``.sql``
files, ``queries`` the named statements, ``wake`` the LISTEN/NOTIFY wake-ups. genqueue's
options ride in the URL's query string; any other query option goes to libpq::

    postgresql://user:pass@host:5432/db?schema=genqueue  schema of genqueue's tables
        &pool_min=1&pool_max=10                         connection pool size
        &retry_for=15                                   seconds to ride out an outage
        &pool_timeout=10                                seconds to wait for a connection
        &sslmode=require&connect_timeout=5              libpq's own, passed through
"""

from genqueue.backends.postgres.backend import PostgresBackend
from genqueue.backends.postgres.options import PostgresOptions

__all__ = ["PostgresBackend", "PostgresOptions"]

"""The Redis backend (``redis://``, ``rediss://``): shared by any number of machines.

Install with ``pip install 'genqueue[redis]'``. ``backend`` explains the design, ``keys``
the key schema, ``lua/`` holds one script per operation. Options ride in the URL's query
string (any other query option goes to redis-py)::

    redis://host:6379/0?prefix=genqueue     key prefix (several apps can share a Redis)
        &allow_eviction=1                   accept a maxmemory-policy other than noeviction
        &retry_for=15                       seconds to ride out an outage before failing
        &socket_timeout=5&connect_timeout=2 seconds, for every call
        &health_check_interval=10           seconds idle before a connection is checked
        &max_connections=64                 connection pool size
"""

from genqueue.backends.redis.backend import RedisBackend
from genqueue.backends.redis.options import RedisOptions

__all__ = ["RedisBackend", "RedisOptions"]

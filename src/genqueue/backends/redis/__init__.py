"""The Redis backend (``redis://``, ``rediss://``, and Redis Cluster with
``redis+cluster://``, ``rediss+cluster://``): shared by any number of machines.

Install with ``pip install 'genqueue[redis]'``. ``backend`` explains the design, ``keys``
the key schema, ``lua/`` holds one script per operation, ``options`` the URLs,
``cluster`` what is particular to Redis Cluster. Options ride in the URL's query string
(any other query option goes to redis-py)::

    redis://host:6379/0?prefix=genqueue     key prefix (several apps can share a Redis)
        &allow_eviction=1                   accept a maxmemory-policy other than noeviction
        &retry_for=15                       seconds to ride out an outage before failing
        &socket_timeout=5&connect_timeout=2 seconds, for every call
        &health_check_interval=10           seconds idle before a connection is checked
        &max_connections=64                 connection pool size (per node on a cluster)
        &wait_replicas=0&wait_timeout=0.5   WAIT for replicas after each write (0: never)

    redis+cluster://h1:7000,h2:7000/?prefix=genqueue   seed nodes of a cluster
"""

from genqueue.backends.redis.backend import RedisBackend
from genqueue.backends.redis.options import RedisOptions

__all__ = ["RedisBackend", "RedisOptions"]

"""What every broker package is built from.

=====================  ===================================================================
:mod:`.wire`           a Message as payload bytes plus string headers, and back (never raises)
:mod:`.errors`         one client's exceptions mapped to tidings' at the boundary
:mod:`.settle`         acks and nacks recorded now, written in bulk on the next loop turn
:mod:`.options`        URL query parameters as a transport's options dataclass
:mod:`.tls`            client TLS settings
:mod:`.leased`         subscriptions over a database queue with leases (the SQL transports)
:mod:`.leased_transport`  the SQL transports' features, subscribing and closing
:mod:`.partitioned`    a group's shared subscription and its leased partitions, read as one
:mod:`.dead_letter_rows`  dead letters as rows of a SQL table
:mod:`.supervise`      a background task restarted after an unexpected error, logged once
=====================  ===================================================================

The kit imports no broker client: a broker package imports the kit and its own client, nothing else
of the transports.
"""

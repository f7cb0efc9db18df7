"""Showing a broker URL without its secrets."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["redact"]

# A query parameter whose name says it holds a secret (``sslpassword``, ``keyfile_password``).
_SECRET_PARAMETER = re.compile(r"(?i)((?:^|&)[^=&]*(?:password|secret|token)[^=&]*=)[^&]*")


def redact(url: str) -> str:
    """The URL with every password replaced by ``***``, for reprs, logs and error messages.

    Covers ``user:password@`` before each host (NATS and Kafka URLs list several hosts, each
    with credentials) and query parameters whose names contain ``password``, ``secret`` or
    ``token``. The one helper for every place a URL is shown.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: show its scheme only
        return f"{url.partition(':')[0]}:***"
    hosts = []
    for host in parts.netloc.split(","):
        userinfo, at, address = host.rpartition("@")
        if at and ":" in userinfo:
            host = f"{userinfo.partition(':')[0]}:***@{address}"
        hosts.append(host)
    netloc, query = ",".join(hosts), _SECRET_PARAMETER.sub(r"\1***", parts.query)
    # replaced in place: urlunsplit would turn ``sqlite:///x.db`` into ``sqlite:/x.db``
    if netloc != parts.netloc:
        url = url.replace(parts.netloc, netloc, 1)
    if query != parts.query:
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url

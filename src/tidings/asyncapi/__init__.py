"""AsyncAPI 3.0 documents that describe a bus: ``tidings.asyncapi.document(bus)``.

What the bus sends (an operation per event class it knows), what it receives (an operation per
route, with its group), on which channels (a topic or a pattern each), in which shape (JSON
Schemas generated from the event classes, the headers tidings sets) and where (the servers of
``bus.url``, credentials left out). ``tidings asyncapi module:bus`` prints it as JSON or YAML.
See docs/asyncapi.md.
"""

from __future__ import annotations

from tidings.asyncapi.spec import VERSION, document

__all__ = ["VERSION", "document"]

"""Conformance cases for topic names (part of TransportSuite): one rule on every transport.

See :mod:`tidings.topics`: a pattern, ``#``, an empty token or whitespace cannot be published to;
``#``, an empty token, whitespace or a misplaced wildcard cannot be subscribed to. Each refusal
is a ValueError raised by the call itself, before anything reaches the broker.
"""

from __future__ import annotations

import pytest

from tidings.message import Message
from tidings.testing.receiver import TransportFactory, opened, unique

__all__ = ["TopicCases"]


class TopicCases:
    async def test_topic_rules(self, transport_factory: TransportFactory) -> None:
        """Patterns and malformed names are refused by publish; malformed ones by subscribe."""
        base = unique("suite.rules")
        message = Message("suite.item", b"{}")
        unpublishable = [
            f"{base}.*",
            f"{base}.>",
            f"{base}.#",
            f"{base}.a#b",
            f"{base}..a",
            f"{base}.a b",
            "",
        ]
        unsubscribable = [
            f"{base}.#",
            f"{base}.a#",
            f"{base}..a",
            f"{base}.a b",
            f"{base}.>.a",
            f"{base}.a*",
            "",
        ]
        async with opened(transport_factory) as transport:
            for topic in unpublishable:
                with pytest.raises(ValueError, match=r"topic|pattern|publish"):
                    await transport.publish(topic, [message])
            for pattern in unsubscribable:
                with pytest.raises(ValueError, match=r"topic|token|wildcard"):
                    transport.subscribe(pattern, group=unique("group"))

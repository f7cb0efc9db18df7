"""The trace ``tidings demo`` ends with: one publish of signups, drawn as a tree.

The demo's bus reports to a tracer provider of the OpenTelemetry SDK that keeps spans in
memory. Only one publish is traced (:meth:`TraceRecorder.publish`: a new trace is sampled only
then, and the services' spans follow their parent's decision), so the other signups cost next
to nothing and the events per second the demo reports stay those of an untraced run.

The tree is that publish's ``send`` span with, under it, the signups worth a look: the first
whose email was retried and the first that was dead-lettered (or the first signup, if none
was), each with the ``process`` span of every attempt of every service, failures and the
``dead_lettered`` event in red.

This module needs the SDK (``pip install 'tidings[otel]'``); the demo notes its absence and
runs without a trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode
from rich.markup import escape
from rich.tree import Tree

from tidings.bus import Bus
from tidings.telemetry import Telemetry

__all__ = ["TraceRecorder"]

ATTEMPT = "tidings.message.attempt"
GROUP = "messaging.consumer.group.name"
MESSAGE_ID = "messaging.message.id"


class _Switch(Sampler):
    """Samples a new trace while on, drops it while off."""

    def __init__(self) -> None:
        self.on = False

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "tidings demo: one publish"


class TraceRecorder:
    """Keeps the spans of what :meth:`publish` published and of its handling; give
    :attr:`telemetry` to the bus (nothing else it publishes is traced)."""

    def __init__(self) -> None:
        self._switch = _Switch()
        self._exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ParentBased(self._switch), shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        self.telemetry = Telemetry(tracer_provider=provider)
        self._labels: dict[str, str] = {}

    async def publish(self, bus: Bus, events: Sequence[Any], label: Callable[[Any], str]) -> None:
        """``bus.publish_many(events)``, traced; ``label(event)`` names its message in the tree
        (``"user 250"``)."""
        messages = [bus.message(event) for event in events]
        self._labels.update((m.id, label(e)) for m, e in zip(messages, events, strict=True))
        self._switch.on = True
        try:
            await bus.publish_many(messages)
        finally:
            self._switch.on = False

    def tree(self) -> Tree | None:
        """The first traced publish as a tree, or None if nothing was traced."""
        spans = self._exporter.get_finished_spans()
        send = next((s for s in spans if s.kind is SpanKind.PRODUCER), None)
        if send is None:
            return None
        by_message: dict[str, list[ReadableSpan]] = {}
        for span in spans:
            if span.parent is not None and span.parent.span_id == send.context.span_id:
                message_id = str(_attributes(span).get(MESSAGE_ID))
                by_message.setdefault(message_id, []).append(span)
        count = _attributes(send).get("messaging.batch.message_count", 1)
        root = Tree(
            f"[bold]{escape(send.name)}[/] · {count} message{'s' if count != 1 else ''}"
            f" · {_took(send)}"
            f" [dim]trace {send.context.trace_id:032x}[/]"
        )
        shown = _worth_a_look(by_message)
        for message_id, why in shown.items():
            label = self._labels.get(message_id, "message")
            branch = root.add(f"{escape(label)} ({why}) [dim]message {escape(message_id)}[/]")
            for span in _by_service(by_message[message_id]):
                _add_process(branch, span)
        if len(by_message) > len(shown):
            root.add(f"[dim]… {len(by_message) - len(shown)} more messages, not shown[/]")
        return root


def _worth_a_look(by_message: Mapping[str, Sequence[ReadableSpan]]) -> dict[str, str]:
    """Message ids to show, with why: the first retried and the first dead-lettered one."""
    shown: dict[str, str] = {}
    retried = next((m for m, spans in by_message.items() if _max_attempt(spans) > 1), None)
    dead = next((m for m, spans in by_message.items() if any(map(_dead, spans))), None)
    if retried is not None:
        shown[retried] = "retried"
    if dead is not None:
        shown[dead] = "dead-lettered" if dead not in shown else "retried, dead-lettered"
    if not shown and by_message:
        shown[next(iter(by_message))] = "handled"
    return shown


def _add_process(branch: Tree, span: ReadableSpan) -> None:
    attributes = _attributes(span)
    where = f"{attributes.get(GROUP)} · attempt {attributes.get(ATTEMPT)} · {_took(span)}"
    if span.status.status_code is StatusCode.ERROR:
        outcome = f"[red]✗ {escape(span.status.description or 'failed')}[/]"
    else:
        outcome = "[green]✓[/]"
    node = branch.add(f"{escape(span.name)} · {escape(where)} {outcome}")
    for event in span.events:
        if event.name == "dead_lettered":  # the others (the exception) repeat the status
            reason = (event.attributes or {}).get("tidings.dead_letter.reason", "")
            node.add(f"[red]event dead_lettered[/]: {escape(str(reason))}")


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def _max_attempt(spans: Sequence[ReadableSpan]) -> int:
    return max(int(_attributes(s).get(ATTEMPT, 1)) for s in spans)


def _dead(span: ReadableSpan) -> bool:
    return any(event.name == "dead_lettered" for event in span.events)


def _by_service(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """Each service's spans together, in the order of its first start, then by start."""
    spans = sorted(spans, key=lambda span: span.start_time or 0)
    first: dict[Any, int] = {}
    for started, span in enumerate(spans):
        first.setdefault(_attributes(span).get(GROUP), started)
    return sorted(spans, key=lambda span: first[_attributes(span).get(GROUP)])


def _took(span: ReadableSpan) -> str:
    if span.start_time is None or span.end_time is None:
        return "unfinished"
    return f"{(span.end_time - span.start_time) / 1e6:.2f} ms"

"""Example applications shipped with tidings: ``signup`` (the services behind ``tidings demo``)
and ``bank`` (an event-sourced account, ``python -m tidings.examples.bank``). They use only the
public API and are part of the package, so the demo runs from an installed wheel."""

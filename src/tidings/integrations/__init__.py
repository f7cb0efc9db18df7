"""tidings inside web frameworks: :mod:`tidings.integrations.fastapi` (``pip install
'tidings[fastapi]'``). Each integration is imported on its own; this package imports none."""

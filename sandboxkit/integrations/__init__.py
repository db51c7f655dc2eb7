"""Adapters that hand sandboxkit sandboxes to agent and eval frameworks.

Each adapter lives in its own module and imports its framework there, so the core never needs it:
``sandboxkit.integrations.deepagents`` (``pip install sandboxkit[deepagents]``) and
``sandboxkit.integrations.inspect_ai`` (``pip install sandboxkit[inspect]``).
"""

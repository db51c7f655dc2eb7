"""The conformance suite, collected only when test_modal_live.py names this file."""

from sandboxkit_conformance.suite import *  # noqa: F403

"""The whole conformance suite against provider ``memory`` (minutes of wall time, no engine: ``slow``)."""

import pytest
from sandboxkit_conformance.suite import *  # noqa: F403

pytestmark = pytest.mark.slow

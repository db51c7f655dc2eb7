import pytest
from sandboxkit_conformance.suite import *  # noqa: F403

# every suite test needs the engine (the suite's own fixtures ask for it indirectly)
pytestmark = pytest.mark.docker

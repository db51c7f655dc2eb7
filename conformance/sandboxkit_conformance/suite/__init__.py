"""The conformance suite. A provider's test module is one line: ``from sandboxkit_conformance.suite import *``.

Every test is a method of a ``Test*`` class; classes share one sandbox where a test does not need
a fresh one. Tests that need a capability carry ``@requires(Capability.X)`` and skip, naming it,
where the provider does not declare it.
"""

import pytest

pytest.register_assert_rewrite("sandboxkit_conformance.suite._support")

from sandboxkit_conformance.suite.test_cancellation import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_cancellation import __all__ as _cancellation  # noqa: E402
from sandboxkit_conformance.suite.test_capabilities import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_capabilities import __all__ as _capabilities  # noqa: E402
from sandboxkit_conformance.suite.test_errors import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_errors import __all__ as _errors  # noqa: E402
from sandboxkit_conformance.suite.test_execute import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_execute import __all__ as _execute  # noqa: E402
from sandboxkit_conformance.suite.test_files import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_files import __all__ as _files  # noqa: E402
from sandboxkit_conformance.suite.test_lifecycle import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_lifecycle import __all__ as _lifecycle  # noqa: E402
from sandboxkit_conformance.suite.test_network import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_network import __all__ as _network  # noqa: E402
from sandboxkit_conformance.suite.test_ports import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_ports import __all__ as _ports  # noqa: E402
from sandboxkit_conformance.suite.test_processes import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_processes import __all__ as _processes  # noqa: E402
from sandboxkit_conformance.suite.test_resources import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_resources import __all__ as _resources  # noqa: E402
from sandboxkit_conformance.suite.test_snapshots import *  # noqa: E402, F403
from sandboxkit_conformance.suite.test_snapshots import __all__ as _snapshots  # noqa: E402

#: In running order: the basics first, so a broken provider fails where it is easiest to read.
__all__ = [
    *_lifecycle,
    *_execute,
    *_cancellation,
    *_files,
    *_resources,
    *_ports,
    *_snapshots,
    *_processes,
    *_network,
    *_capabilities,
    *_errors,
]

from sandboxkit_conformance.suite import *  # noqa: F403

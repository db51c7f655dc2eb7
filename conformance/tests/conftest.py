"""Meta-tests of the conformance suite: they run it with pytester against (deliberately broken) providers."""

pytest_plugins = ["pytester"]

"""Example sandboxkit provider: sandboxes as containers driven through the ``docker`` command line."""

"""sandboxkit-docker: the Docker provider for sandboxkit (registered through the `sandboxkit` entry point)."""

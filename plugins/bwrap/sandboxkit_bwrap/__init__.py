"""sandboxkit's bubblewrap provider: daemon-less local sandboxes (``provider="bwrap"``)."""

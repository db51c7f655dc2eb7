"""``python -m sandboxkit_modal.emulator``."""

from sandboxkit_modal.emulator import main

raise SystemExit(main())

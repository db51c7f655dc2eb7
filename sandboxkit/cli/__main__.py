import sys

from sandboxkit.cli import main

sys.exit(main())

import sys

from rapref.cli import main

sys.exit(main())

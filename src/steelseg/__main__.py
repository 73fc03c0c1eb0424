import sys

from steelseg.cli import main

sys.exit(main())

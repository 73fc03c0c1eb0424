import sys

from steelseg.commands.cli import main

sys.exit(main())

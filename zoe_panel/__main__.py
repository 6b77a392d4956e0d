import sys

from zoe_panel.cli import main

sys.exit(main())

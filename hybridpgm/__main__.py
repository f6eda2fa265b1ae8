import sys

from hybridpgm.cli import main

sys.exit(main())

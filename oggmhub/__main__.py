import sys

from oggmhub.cli import main

sys.exit(main())

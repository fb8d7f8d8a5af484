"""``python -m genai_fleet_client run ...`` is the ``genai-fleet`` command."""

import sys

from genai_fleet_client.cli import main

sys.exit(main())

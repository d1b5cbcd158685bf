"""``python -m calico_images``: see calico_images.main."""

import sys

from calico_images.main import main

sys.exit(main())

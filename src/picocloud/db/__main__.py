"""`python -m picocloud.db URL`: apply the migrations to the database at URL."""

import logging
import sys

from picocloud.db import make_engine, upgrade

logging.basicConfig(level=logging.WARNING)
engine = make_engine(sys.argv[1])
upgrade(engine)
engine.dispose()

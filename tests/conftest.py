import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

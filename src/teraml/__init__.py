"""teraml: scalable and private machine learning, faithfully and fast.

Importing ``teraml`` is cheap: it loads neither torch nor pyspark. Each component lives in its own
subpackage (``teraml.attention``, ``teraml.hac``, ...) and imports its heavy dependencies itself.

Example
-------
>>> import teraml
>>> teraml.__version__
'0.1.0'
>>> X, y = teraml.datasets.load_digits()
>>> X.shape
(1797, 64)
"""

from teraml import datasets
from teraml._version import __version__

__all__ = ["__version__", "datasets"]

import subprocess
import sys

import teraml


def test_version():
    assert isinstance(teraml.__version__, str) and teraml.__version__.count(".") == 2


def test_import_loads_neither_torch_nor_pyspark():
    code = "import teraml, teraml.datasets, teraml.models, teraml.report, teraml.cli, teraml.selection, " \
           "teraml.selection.baselines, teraml.selection.regression, teraml.hac, sys; " \
           "bad = [m for m in ('torch', 'pyspark', 'transformers') if m in sys.modules]; " \
           "assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """One SparkSession (local[2], a task may fail once and be retried) shared by every Spark test.

    Missing pyspark or Java skips the Spark tests on a developer machine; with CI=true they fail instead,
    since CI installs the spark extra and must run them."""
    try:
        from teraml._spark import spark_session

        os.environ.setdefault("PYSPARK_PYTHON", __import__("sys").executable)
        from pyspark.sql import SparkSession

        if SparkSession.getActiveSession() is None:
            (SparkSession.builder.master("local[2,2]").appName("teraml-tests")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4")
             .config("spark.default.parallelism", "2")
             .config("spark.pyspark.python", __import__("sys").executable)
             .getOrCreate())
        session = spark_session()
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"Spark unavailable: {exc}")
    yield session

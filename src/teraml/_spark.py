"""The one way into Apache Spark for every component: import pyspark, check Java, get a SparkSession.

pyspark is an optional extra (``pip install teraml[spark]``, pyspark >= 4.0, Java 17+); it is imported only
here and in the modules that run on Spark (``teraml.hac.engines.spark``, ``teraml.selection.spark``), never
when ``teraml`` is imported. A missing pyspark or Java is an ``ImportError`` that says how to install them.

>>> from teraml._spark import spark_session
>>> spark = spark_session("local[2]")          # doctest: +SKIP
>>> spark is spark_session()                   # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ["require_pyspark", "spark_session", "is_spark_session", "is_spark_dataframe", "ensure_checkpoint_dir",
           "SparkSessionType", "INSTALL_HINT"]

#: What every "pyspark is missing" message ends with.
INSTALL_HINT = "pip install teraml[spark]"


def _java_ok() -> tuple[bool, str]:
    """Whether a Java runtime of version >= 17 can be started (JAVA_HOME first, then PATH)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return False, "no java executable found (set JAVA_HOME or put java on PATH)"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{java} -version failed: {exc}"
    text = out.stderr + out.stdout
    import re

    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        return False, f"could not read the Java version from {text.strip()[:80]!r}"
    major = int(m.group(1))
    if major == 1 and m.group(2):   # "1.8.0_..." is Java 8
        major = int(m.group(2))
    if major < 17:
        return False, f"Java {major} found, Java 17+ is needed"
    return True, text.splitlines()[0] if text else ""


def require_pyspark(what: str):
    """Import and return the ``pyspark`` module, or raise ``ImportError("<what> requires pyspark>=4.0 and Java
    17+: pip install teraml[spark]")`` (with the reason: pyspark missing or too old, or Java missing)."""
    msg = f"{what} requires pyspark>=4.0 and Java 17+: {INSTALL_HINT}"
    try:
        import pyspark
    except ImportError as exc:
        raise ImportError(f"{msg} (pyspark is not installed)") from exc
    import warnings

    # pyspark 4.3 warns at every pandas conversion that pandas 3 is not fully supported; the conversions used
    # here (numeric, string and array columns, Arrow enabled) are tested, so that one message is silenced
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    major = int(pyspark.__version__.split(".")[0])
    if major < 4:
        raise ImportError(f"{msg} (pyspark {pyspark.__version__} is installed)")
    return pyspark


def is_spark_session(obj) -> bool:
    """Whether ``obj`` is a ``pyspark.sql.SparkSession`` (False, without importing pyspark, if it is not loaded)."""
    mod = sys.modules.get("pyspark.sql")
    return mod is not None and isinstance(obj, mod.SparkSession)


class _SessionMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        return is_spark_session(obj)


class SparkSessionType(metaclass=_SessionMeta):
    """``isinstance(x, SparkSessionType)`` is True iff x is a SparkSession; pyspark is not imported for it (a
    constraint of :mod:`teraml._validation` can name the type without loading pyspark)."""


def is_spark_dataframe(obj) -> bool:
    """Whether ``obj`` is a Spark ``DataFrame`` (False, without importing pyspark, if pyspark is not loaded)."""
    mod = sys.modules.get("pyspark.sql")
    return mod is not None and isinstance(obj, mod.DataFrame)


def spark_session(master: str | None = None, *, what: str = "engine='spark'", config: dict | None = None):
    """The active SparkSession, or a new one (``master``, default ``local[*]``, when none is active).

    A new session runs its Python workers with this interpreter (``PYSPARK_PYTHON``), so the workers import the
    same teraml, numba and pyarrow, and gets a checkpoint directory (TeraHAC checkpoints every round). An
    existing session (on a cluster, from ``spark-submit``) is used as it is, with a checkpoint directory set
    only if it has none (a local temporary folder: on a cluster, set a shared one first with
    ``spark.sparkContext.setCheckpointDir("hdfs://...")``). ``config``: extra settings of a new session (e.g. ``{"spark.driver.memory": "8g"}``).
    """
    require_pyspark(what)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        ok, why = _java_ok()
        if not ok:
            raise ImportError(f"{what} requires pyspark>=4.0 and Java 17+: {INSTALL_HINT} ({why})")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = (SparkSession.builder.master(master or "local[*]").appName("teraml")
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.pyspark.python", sys.executable)
                   .config("spark.cleaner.referenceTracking.cleanCheckpoints", "true"))
        for key, value in (config or {}).items():
            builder = builder.config(key, value)
        active = builder.getOrCreate()
        active.sparkContext.setLogLevel("ERROR")
    return ensure_checkpoint_dir(active)


def ensure_checkpoint_dir(session):
    """Give ``session`` a checkpoint directory (a local temporary folder) if it has none; returns the session.
    On a cluster, set a shared one first: ``session.sparkContext.setCheckpointDir("hdfs://...")``."""
    sc = session.sparkContext
    if sc.getCheckpointDir() is None:
        if not sc.master.startswith("local"):
            raise ValueError(f"the SparkSession (master {sc.master!r}) has no checkpoint folder, and a local temporary "
                             "one would not be seen by the executors: set a shared one first, e.g. "
                             "spark.sparkContext.setCheckpointDir('hdfs:///tmp/teraml-checkpoints')")
        sc.setCheckpointDir(tempfile.mkdtemp(prefix="teraml-spark-ckpt-"))
    return session

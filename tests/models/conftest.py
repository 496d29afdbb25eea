"""One BLAS thread for the models tests, as in a Ray worker (2-thread OpenBLAS on a shared 2-core
machine made small matrix products several times slower)."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield

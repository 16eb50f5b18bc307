"""CPU kernels (``@njit``), one module per op family; see ``docs/kernels.md``.

Numba's thread pool is started here, before any kernel runs. A cached kernel can link a
``prange`` kernel it calls (the GEMM's serial twin links ``_gemm._reduce_parts``), and the
pool's symbols (``get_num_threads``, ``do_scheduling_unsigned``, ...) are bound only once
the pool has started. Loaded from the disk cache into a process whose pool had not started,
such a kernel called a null pointer: a 4x4x4 ``_gemm.gemm`` as a process's first call
crashed, and ran once ``_launch_threads()`` had been called first. Starting the pool takes
about 20 ms, once, on the first CPU op.
"""

from numba.np.ufunc import parallel as _parallel

_parallel._launch_threads()

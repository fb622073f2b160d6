"""backends/kernels.cu compiled for the host (tests/cuda_host.h), behind CuPy's kernel-call interface, so that the
CPU tests run the real CUDA source through the CuPy backend's own launch code.

`emulated_kernel(name, dtype, *template_args)` has the signature of `cupy_backend._kernel` and returns a callable
`kernel(grid, block, args, shared_mem=0)` like CuPy's RawKernel. Each name expression is compiled once by g++
into a shared library, cached by the hash of the sources. Arguments are checked against the kernel's parameter
list as the device would need them (a NumPy array for each pointer, with the element's kind and size; a NumPy
scalar of the exact type for each value), so a launch that passes a Python int or an int64 where the kernel takes
an int fails here, where on the GPU it would read garbage."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from deepntk.backends.cupy_backend import KERNEL_SOURCE, kernel_expression

HOST_HEADER = Path(__file__).with_name("cuda_host.h")
CTYPES = {np.dtype(np.float64): ctypes.c_double, np.dtype(np.float32): ctypes.c_float,
          np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64}
LAUNCH_ERRORS = {1: "too much dynamic shared memory requested (more than 48 KiB without opting in)",
                 2: "the kernel wrote past the dynamic shared memory it was given",
                 3: "a block of 0 or more than 1024 threads"}
MAX_PARAMETERS = 64


def compiler_missing_reason() -> str:
    """'' when g++ can build the emulated kernels, else why not."""
    return "" if shutil.which("g++") else "g++ is not installed: the CUDA kernels cannot be compiled for the host"


def _cache_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / "deepntk-cuda-emulation"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _build(expression: str) -> Path:
    sources = HOST_HEADER.read_bytes() + Path(KERNEL_SOURCE).read_bytes() + expression.encode()
    library = _cache_folder() / f"{hashlib.sha256(sources).hexdigest()[:24]}.so"
    if library.exists():
        return library
    unit = (f'#include "{HOST_HEADER}"\n#include "{KERNEL_SOURCE}"\n'
            f"static auto* const kernel = &{expression};\n"
            'extern "C" int launch(const unsigned* grid, const unsigned* block, std::size_t shared, void** args) '
            "{ return emulate_launch(kernel, grid, block, shared, args); }\n"
            'extern "C" int signature(int* kinds, int* sizes) { return emulate_signature(kernel, kinds, sizes); }\n')
    with tempfile.TemporaryDirectory(dir=library.parent) as work:
        source = Path(work) / "unit.cpp"
        source.write_text(unit)
        built = Path(work) / "kernel.so"
        result = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-o", str(built),
                                 str(source)], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{expression} does not compile for the host:\n{result.stderr[-4000:]}")
        os.replace(built, library)  # atomic: a concurrent build of the same unit writes the same bytes
    return library


def _dims(value) -> tuple:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


class EmulatedKernel:
    """One kernel instantiation, callable as CuPy's RawKernel: kernel(grid, block, args, shared_mem=0)."""

    def __init__(self, expression: str):
        self.expression = expression
        self.library = ctypes.CDLL(str(_build(expression)))
        kinds, sizes = (ctypes.c_int * MAX_PARAMETERS)(), (ctypes.c_int * MAX_PARAMETERS)()
        count = self.library.signature(kinds, sizes)
        self.parameters = list(zip(kinds[:count], sizes[:count], strict=True))
        self.launches = 0

    def _argument(self, position: int, value):
        kind, size = self.parameters[position]
        where = f"{self.expression}, argument {position}"
        if kind < 2:
            if not isinstance(value, np.ndarray) or not value.flags.c_contiguous:
                raise TypeError(f"{where}: the kernel takes a pointer; got {type(value).__name__}, not a contiguous "
                                "array")
            if value.dtype.itemsize != size or (value.dtype.kind == "f") != (kind == 0):
                raise TypeError(f"{where}: the kernel's elements are {size}-byte "
                                f"{'floats' if kind == 0 else 'integers'}; got {value.dtype}")
            return ctypes.c_void_p(value.ctypes.data)
        if not isinstance(value, np.generic):
            raise TypeError(f"{where}: {type(value).__name__} {value!r} has no fixed C type (CuPy would guess "
                            "one); pass a NumPy scalar")
        if value.dtype.itemsize != size or (value.dtype.kind == "f") != (kind == 2):
            raise TypeError(f"{where}: the kernel takes a {size}-byte {'float' if kind == 2 else 'integer'}; got "
                            f"{value.dtype}")
        return CTYPES[value.dtype](value)

    def __call__(self, grid, block, args, shared_mem=0):
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.expression} takes {len(self.parameters)} arguments; got {len(args)}")
        values = [self._argument(i, value) for i, value in enumerate(args)]
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        status = self.library.launch((ctypes.c_uint * 3)(*_dims(grid)), (ctypes.c_uint * 3)(*_dims(block)),
                                     ctypes.c_size_t(int(shared_mem)), pointers)
        if status:
            raise RuntimeError(f"{self.expression}: {LAUNCH_ERRORS[status]}")
        self.launches += 1


@functools.lru_cache(maxsize=None)
def emulated_kernel(name: str, dtype: str, *template_args: int) -> EmulatedKernel:
    """The host build of kernels.cu's `name<ctype, template_args…>`, as `cupy_backend._kernel` names it."""
    return EmulatedKernel(kernel_expression(name, dtype, *template_args))

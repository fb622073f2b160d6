"""kernels.cu compiled for the H200 (sm_90) by nvcc, where nvcc is installed (no GPU needed): every kernel the CuPy
backend and the CNN limit kernel's device path ask for compiles for the device, and where the backend compiles the
width in (`compiled_width`), ptxas reports no stack frame and no spills, so a thread's activations, Jacobian rows
and masks are registers. The same kernels with the run-time width keep them in local memory, the stack frame ptxas
reports, which is why widths are compiled in (docs/backends.md#cuda-kernels).

The expressions are the ones the backend's launch code builds, recorded from its `_launch_*` methods, not a list
kept here."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import deepntk
from deepntk.backends import cupy_backend
from deepntk.backends.cupy_backend import KERNEL_SOURCE, REGISTER_VALUES, CupyBackend, kernel_expression
from deepntk.engine.packed import pack

DEVICE_ARCH = "sm_90"  # the H200 the GPU checks run on

def requested_expressions(monkeypatch, nets_list, cnn_list) -> set[str]:
    """The name expressions the backend's launches ask `_kernel` for, for these networks (nothing runs)."""
    asked = set()

    def record(name, dtype, *template_args):
        asked.add(kernel_expression(name, dtype, *template_args))
        return lambda *args, **kwargs: None

    monkeypatch.setattr(cupy_backend, "_kernel", record)
    backend = CupyBackend(xp=np)
    for nets in nets_list:
        Xt = np.zeros((nets.width, 3), dtype=nets.dtype)
        Yt = np.zeros((nets.outputs, 3), dtype=nets.dtype)
        backend._launch_forward(nets, nets.W, nets.b, Xt)
        backend._launch_deltas(nets, nets.W, nets.b, Xt, Yt, 1.0)
        A, G = backend._launch_trace(nets, nets.W, nets.b, Xt)
        backend._launch_gram(nets, A, G, A, G, True)
    for nets in cnn_list:
        X = np.zeros((2, nets.width, nets.size, nets.size), dtype=nets.dtype)
        _, A = backend._launch_conv_forward(nets, nets.W, nets.b, X, True)
        backend._launch_conv_backward(nets, nets.W, nets.b, X, A, np.zeros((nets.networks, 2, 1, nets.outputs)))
    P = np.ones((2, 9, 9))
    for t in (1.0, 1 / 81):  # correlations down to 0.1, and all near one (Table 1's scales)
        backend._launch_pair_sums(P, P.sum(axis=2), P, P.sum(axis=2), t, np.eye(9), 1.0, True)
    return asked


def ptxas_report(expressions) -> dict[str, dict[str, int]]:
    """Per expression: stack frame, spill stores and registers, as ptxas reports them for DEVICE_ARCH."""
    unit = f'#include "{KERNEL_SOURCE}"\n' + "static void* const kernels[] = {\n" + "".join(
        f"    (void*)&{expression},\n" for expression in sorted(expressions)) + "};\n"
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "instantiations.cu"
        source.write_text(unit)
        result = subprocess.run(["nvcc", "-std=c++17", "-cubin", f"-arch={DEVICE_ARCH}", "-Xptxas", "-v", "-o",
                                 str(Path(work) / "kernels.cubin"), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-6000:]
    report, entry = {}, None
    for line in result.stderr.splitlines():
        if match := re.search(r"Compiling entry function '(\w+)'", line):
            demangled = subprocess.run(["c++filt", match.group(1)], capture_output=True, text=True).stdout
            entry = re.sub(r"^void ", "", demangled.strip()).split("(")[0]
            report[entry] = {}
        elif match := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line):
            report[entry].update(stack=int(match.group(1)), spills=int(match.group(2)))
        elif match := re.search(r"Used (\d+) registers", line):
            report[entry]["registers"] = int(match.group(1))
    return report


def mlp_nets(width, k, dtype, networks=2):
    spec = deepntk.MLP(width - 1 - k, k, 3, 2.0)
    return pack(deepntk.stack_params([deepntk.init_params(spec, seed=s).astype(dtype) for s in range(networks)]))


@pytest.fixture(scope="module")
def expressions():
    """What the backend asks for: MLPs on both sides of the register limit, Table 1's 7×7 CNNs (binary and
    10-class), 28×28 images (3 values a thread), float32, and the CNN limit kernel."""
    nets_list = []
    for k in (1, 2, 3):
        widest = REGISTER_VALUES // (k + 3)  # the widest trace of k Jacobian rows compiled in
        nets_list += [mlp_nets(width, k, "float64") for width in (k + 3, widest, widest + 1)]
    nets_list.append(mlp_nets(REGISTER_VALUES // 5, 2, "float32"))
    cnn_list = [pack(deepntk.init_params(deepntk.CNN(1, d, k, 3, 2.0)).astype(dtype)).stacked()
                for d, k, dtype in ((7, 1, "float64"), (7, 10, "float64"), (28, 1, "float64"), (7, 2, "float32"))]
    with pytest.MonkeyPatch.context() as monkeypatch:
        return requested_expressions(monkeypatch, nets_list, cnn_list)


@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("c++filt") is None,
                    reason="nvcc (CUDA toolkit) or c++filt is not installed: kernels.cu cannot be compiled for the "
                           "device here")
def test_every_kernel_the_backend_launches_compiles_for_the_device_with_compiled_widths_in_registers(expressions):
    report = ptxas_report(expressions)
    assert set(report) == expressions
    assert {"cnn_correlation_sums<double, 0>", "cnn_correlation_sums<double, 1>", "conv_backward<double, 3, 3>"} \
        <= expressions
    per_input = [e for e in expressions if e.startswith(("dense_forward", "dense_deltas", "dense_trace"))]
    compiled = [e for e in per_input if not e.endswith(", 0>")]
    run_time = [e for e in per_input if e.endswith(", 0>")]
    assert len(compiled) >= 20 and len(run_time) >= 4, (compiled, run_time)
    for expression in compiled + [e for e in expressions if e not in per_input]:
        assert report[expression]["stack"] == 0 and report[expression]["spills"] == 0, (expression, report[expression])
    for expression in run_time:
        assert report[expression]["stack"] > 0, (expression, report[expression])


def test_nvrtc_finds_every_name_expression_as_cupy_compiles_them(expressions):
    """The backend's own path to the device code: CuPy's NVRTC program with the options CuPy adds, for the
    H200's virtual architecture. Every expression must come back as a lowered (mangled) kernel name."""
    compiler = pytest.importorskip("cupy.cuda.compiler", reason="CuPy is not installed (the cuda extra)")
    program = getattr(compiler, "_NVRTCProgram", None)
    if program is None:
        pytest.skip("this CuPy has no _NVRTCProgram: its NVRTC wrapper moved")
    try:
        compiled = program(Path(KERNEL_SOURCE).read_text(), "kernels.cu", (), (), name_expressions=sorted(expressions),
                           method="ptx")
        ptx, lowered = compiled.compile(("-std=c++17", f"-arch=compute_{DEVICE_ARCH[3:]}",
                                         "--device-as-default-execution-space"))
    except (OSError, RuntimeError) as exc:  # no NVRTC library (nvidia-cuda-nvrtc) next to CuPy
        if "nvrtc" in str(exc).lower() and "compile" not in type(exc).__name__.lower():
            pytest.skip(f"CuPy cannot load NVRTC here: {exc}")
        raise
    assert set(lowered) == expressions
    assert all(re.fullmatch(r"_Z\w+", name) for name in lowered.values()), lowered
    assert len(ptx) > 10000

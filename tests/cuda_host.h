// The CUDA dialect of backends/kernels.cu on the host, for the CPU tests of its kernels (tests/cuda_emulation.py).
//
// A launch runs the grid's blocks one after another and a block's threads as concurrent std::threads, so
// __syncthreads is a real barrier and dynamic shared memory (`extern __shared__ smem_raw[]`) one buffer that
// the block's threads share. What this cannot show: timing, warp-level behaviour (kernels.cu uses none), the
// device's memory model beyond barriers, and register or local-memory use (tests/backends/test_cuda_kernels.py
// reads those from ptxas where nvcc is installed).
#pragma once

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __align__(n)
#define __shared__

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline dim3 blockIdx, blockDim, gridDim;
thread_local dim3 threadIdx;
inline std::barrier<>* block_barrier = nullptr;

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

using std::max;
using std::min;
using std::sqrt;

// The most dynamic shared memory a launch may ask for without opting in (cudaFuncAttributeMaxDynamicSharedMemorySize).
constexpr std::size_t DEFAULT_SHARED_LIMIT = 48 * 1024;
constexpr std::size_t CANARY_BYTES = 4096;
constexpr unsigned char CANARY = 0xA5;
alignas(64) unsigned char smem_raw[DEFAULT_SHARED_LIMIT + CANARY_BYTES];

enum LaunchStatus { LAUNCH_OK = 0, TOO_MUCH_SHARED_MEMORY = 1, SHARED_MEMORY_OVERRUN = 2, BAD_BLOCK = 3 };

template <typename... P, std::size_t... I>
void call_kernel(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<P>*>(args[I])...);
}

// args[i] points at the value of parameter i, as for cudaLaunchKernel.
template <typename... P>
int emulate_launch(void (*kernel)(P...), const unsigned* grid, const unsigned* block, std::size_t shared,
                   void** args) {
    if (shared > DEFAULT_SHARED_LIMIT) return TOO_MUCH_SHARED_MEMORY;
    const unsigned threads = block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024) return BAD_BLOCK;
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    for (unsigned z = 0; z < grid[2]; ++z)
        for (unsigned y = 0; y < grid[1]; ++y)
            for (unsigned x = 0; x < grid[0]; ++x) {
                blockIdx = {x, y, z};
                // Shared memory starts as NaNs (all bits set) so that a read before the block writes shows;
                // the canary after the requested bytes shows a write past them.
                std::memset(smem_raw, 0xFF, shared);
                std::memset(smem_raw + shared, CANARY, CANARY_BYTES);
                std::barrier<> barrier(threads);
                block_barrier = &barrier;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned t = 0; t < threads; ++t)
                    pool.emplace_back([&, t] {
                        threadIdx = {t % block[0], t / block[0] % block[1], t / (block[0] * block[1])};
                        call_kernel(kernel, args, std::index_sequence_for<P...>{});
                        barrier.arrive_and_drop();  // a thread that returned no longer holds the others at a barrier
                    });
                for (auto& thread : pool) thread.join();
                for (std::size_t i = 0; i < CANARY_BYTES; ++i)
                    if (smem_raw[shared + i] != CANARY) return SHARED_MEMORY_OVERRUN;
            }
    return LAUNCH_OK;
}

// Per parameter: kind (0 pointer to floating point, 1 pointer to integer, 2 floating point, 3 integer) and the
// size in bytes of the value or of the pointed-to element. Returns the number of parameters.
template <typename P>
void describe_parameter(int* kind, int* size) {
    using V = std::remove_cv_t<std::remove_pointer_t<P>>;
    *kind = (std::is_pointer_v<P> ? 0 : 2) + (std::is_floating_point_v<V> ? 0 : 1);
    *size = static_cast<int>(sizeof(V));
}

template <typename... P>
int emulate_signature(void (*)(P...), int* kinds, int* sizes) {
    int i = 0;
    ((describe_parameter<P>(kinds + i, sizes + i), ++i), ...);
    return i;
}

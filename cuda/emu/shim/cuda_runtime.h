// CUDA-on-CPU emulation runtime: lets cuda/cuda/*.cu compile as plain C++ and
// run on the CPU, one fiber per CUDA thread, so the CUDA kernels' logic is
// checked against the reference on machines without a GPU.
//
// What it models: grids of blocks run one block at a time; inside a block
// every thread is a fiber, switched cooperatively at __syncthreads* and warp
// intrinsics, with the semantics of the CUDA programming guide.  It is strict
// where real hardware is undefined: a barrier that some threads of the block
// skip (returned), a warp intrinsic whose mask names a lane that does not
// exist or has exited, lanes of one mask waiting at different intrinsics, and
// a shuffle reading a lane outside the mask all stop the launch with an
// error naming the block and thread.  Dynamic shared memory starts filled
// with 0xFF bytes (NaN floats) so reads of slots never written show up.
// What it does not model: timing, memory races between barriers (threads of a
// warp run one after another), memory spaces (device pointers are host
// pointers), and resource limits other than 1024 threads per block.
//
// Selected by putting cuda/emu/shim first on the include path, so the .cu
// files' `#include <cuda_runtime.h>` and `<cub/cub.cuh>` land here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
// Blocks run one at a time, so one static instance per kernel is the block's shared copy.
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };

namespace lf_emu {

enum class Op : int { None, Sync, SyncCount, SyncOr, SyncAnd, Any, All, Ballot, ShflIdx, ShflUp, ShflDown, ShflXor };

const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void* dynamic_shared();

// Runs body() as every thread of every block of the grid; throws std::runtime_error on misuse.
void launch(dim3 grid, dim3 block, size_t shared_bytes, std::function<void()> body);

// Block barrier of kind op; returns the reduction of pred over the block (count / or / and).
int block_sync(Op op, int pred);
// Warp collective of kind op over the lanes of mask; returns this lane's result.
uint64_t warp_op(Op op, unsigned mask, int pred, uint64_t payload, int arg, int width);

template <typename T>
uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type over 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}

template <typename T>
T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

// `kernel<<<g, b, s, st>>>(args...)` is written LF_LAUNCH(kernel, g, b, s, st)(args...).
template <typename... P>
struct Launch {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t shared_bytes;
    template <typename... A>
    void operator()(A&&... args) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        // Arguments are copied, as CUDA passes kernel parameters by value.
        auto k = kernel;
        auto params = std::tuple<std::decay_t<P>...>(static_cast<P>(std::forward<A>(args))...);
        launch(grid, block, shared_bytes, [k, params]() { std::apply(k, params); });
    }
};

template <typename... P>
Launch<P...> make_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes) {
    return Launch<P...>{kernel, grid, block, shared_bytes};
}

}  // namespace lf_emu

#define LF_LAUNCH(kernel, grid, block, shm, stream) ::lf_emu::make_launch(kernel, dim3(grid), dim3(block), (shm))
#define LF_DYN_SHARED(T, name) T* name = static_cast<T*>(::lf_emu::dynamic_shared())

#define threadIdx (::lf_emu::thread_idx())
#define blockIdx (::lf_emu::block_idx())
#define blockDim (::lf_emu::block_dim())
#define gridDim (::lf_emu::grid_dim())

// Integer min/max as device code has them (std::min needs equal argument types).
template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
    return b < a ? b : a;
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
    return a < b ? b : a;
}

inline void __syncthreads() { ::lf_emu::block_sync(::lf_emu::Op::Sync, 0); }
inline int __syncthreads_count(int p) { return ::lf_emu::block_sync(::lf_emu::Op::SyncCount, p != 0); }
inline int __syncthreads_or(int p) { return ::lf_emu::block_sync(::lf_emu::Op::SyncOr, p != 0); }
inline int __syncthreads_and(int p) { return ::lf_emu::block_sync(::lf_emu::Op::SyncAnd, p != 0); }

inline int __any_sync(unsigned mask, int p) {
    return (int)::lf_emu::warp_op(::lf_emu::Op::Any, mask, p != 0, 0, 0, 32);
}
inline int __all_sync(unsigned mask, int p) {
    return (int)::lf_emu::warp_op(::lf_emu::Op::All, mask, p != 0, 0, 0, 32);
}
inline unsigned __ballot_sync(unsigned mask, int p) {
    return (unsigned)::lf_emu::warp_op(::lf_emu::Op::Ballot, mask, p != 0, 0, 0, 32);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return ::lf_emu::from_bits<T>(::lf_emu::warp_op(::lf_emu::Op::ShflIdx, mask, 0, ::lf_emu::to_bits(v), src, width));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::lf_emu::from_bits<T>(
        ::lf_emu::warp_op(::lf_emu::Op::ShflUp, mask, 0, ::lf_emu::to_bits(v), (int)delta, width));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::lf_emu::from_bits<T>(
        ::lf_emu::warp_op(::lf_emu::Op::ShflDown, mask, 0, ::lf_emu::to_bits(v), (int)delta, width));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return ::lf_emu::from_bits<T>(
        ::lf_emu::warp_op(::lf_emu::Op::ShflXor, mask, 0, ::lf_emu::to_bits(v), lane_mask, width));
}

// Atomics: the emulator runs one fiber at a time on one OS thread, so a plain
// read-modify-write is atomic.
template <typename T>
inline T atomicAdd(T* a, T v) {
    T old = *a;
    *a = old + v;
    return old;
}
template <typename T>
inline T atomicMax(T* a, T v) {
    T old = *a;
    if (old < v) *a = v;
    return old;
}
template <typename T>
inline T atomicMin(T* a, T v) {
    T old = *a;
    if (v < old) *a = v;
    return old;
}
template <typename T>
inline T atomicExch(T* a, T v) {
    T old = *a;
    *a = v;
    return old;
}
template <typename T>
inline T atomicCAS(T* a, T cmp, T v) {
    T old = *a;
    if (old == cmp) *a = v;
    return old;
}

inline cudaError_t cudaMallocAsync(void* p, size_t bytes, cudaStream_t) {
    void* m = std::malloc(bytes ? bytes : 1);
    *static_cast<void**>(p) = m;
    return m ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T>
inline cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t s) {
    return cudaMallocAsync(static_cast<void*>(p), bytes, s);
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
    std::free(p);
    return cudaSuccess;
}

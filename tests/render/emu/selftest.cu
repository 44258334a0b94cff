// Self-test of the CUDA-on-CPU emulator (cuda/emu): each kernel checks one
// piece of CUDA semantics; each misuse case must stop its launch with an
// error.  Built and run by tests/render/test_cuda_emulator.py; prints one
// line per case, "name ok" or "name FAIL detail".
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

int failures = 0;

void report(const char* name, bool ok, const std::string& detail = "") {
    std::printf("%s %s%s%s\n", name, ok ? "ok" : "FAIL", detail.empty() ? "" : " ", detail.c_str());
    if (!ok) ++failures;
}

__global__ void shuffles(int* out) {
    const int t = threadIdx.x, lane = t % 32;
    int v = t + 1;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    out[6 * t + 0] = v;  // lane 0: sum of its warp's t + 1
    int x = lane;
    for (int m = 1; m < 8; m <<= 1) x += __shfl_xor_sync(0xffffffffu, x, m, 8);
    out[6 * t + 1] = x;  // sum of the 8-lane segment's lane ids
    out[6 * t + 2] = __shfl_up_sync(0xffffffffu, lane, 3, 16);  // lane - 3 within 16-lane segments, else own
    out[6 * t + 3] = __shfl_sync(0xffffffffu, t * 10, 3);       // broadcast of lane 3
    out[6 * t + 4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    out[6 * t + 5] = __any_sync(0xffffffffu, lane == 31) * 2 + __all_sync(0xffffffffu, lane < 31);
}

__global__ void block_ops(int* out) {
    __shared__ int rev[96];
    LF_DYN_SHARED(float, dyn);
    const int t = threadIdx.x;
    rev[t] = t;
    __syncthreads();
    out[4 * t + 0] = rev[95 - t];
    out[4 * t + 1] = __syncthreads_count(t % 4 == 0);
    out[4 * t + 2] = __syncthreads_or(t == 50) * 2 + __syncthreads_and(t < 95);
    out[4 * t + 3] = std::isnan(dyn[t]) ? 1 : 0;  // never written: NaN fill
}

__global__ void grid_ids(int* out) {
    const int i = (blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x * blockDim.y + threadIdx.y * blockDim.x +
                  threadIdx.x;
    atomicAdd(out + 0, 1);
    atomicMax(out + 1, i);
    out[2 + i] = blockIdx.x + 10 * blockIdx.y + 100 * threadIdx.x + 1000 * threadIdx.y;
}

__global__ void early_return_then_barrier(int* out) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void partial_warp_full_mask(float* out) {
    float v = 1.f;
    v += __shfl_down_sync(0xffffffffu, v, 16);
    out[threadIdx.x] = v;
}

__global__ void divergent_collectives(int* out) {
    const int lane = threadIdx.x % 32;
    out[lane] = lane < 16 ? __any_sync(0xffffffffu, 1) : (int)__ballot_sync(0xffffffffu, 1);
}

__global__ void mask_without_caller(int* out) { out[threadIdx.x] = __any_sync(0x1u, 1); }

__global__ void exited_lane_in_mask(int* out) {
    if (threadIdx.x == 7) return;
    out[threadIdx.x] = __any_sync(0xffffffffu, 1);
}

template <typename F>
void expect_error(const char* name, F&& launch, const char* needle) {
    try {
        launch();
        report(name, false, "no error raised");
    } catch (const std::exception& e) {
        const bool ok = std::string(e.what()).find(needle) != std::string::npos;
        report(name, ok, ok ? "" : std::string("unexpected message: ") + e.what());
    }
}

}  // namespace

int main() {
    {
        std::vector<int> out(64 * 6, -1);
        LF_LAUNCH(shuffles, 1, 64, 0, nullptr)(out.data());
        bool ok = true;
        for (int t = 0; t < 64; ++t) {
            const int lane = t % 32, warp = t / 32, seg = lane / 8 * 8;
            if (lane == 0) ok &= out[6 * t] == 32 * 32 * warp + 528;  // sum of warp*32 + 1 .. warp*32 + 32
            ok &= out[6 * t + 1] == 8 * seg + 28;
            ok &= out[6 * t + 2] == (lane % 16 >= 3 ? lane - 3 : lane);
            ok &= out[6 * t + 3] == (warp * 32 + 3) * 10;
            ok &= out[6 * t + 4] == (int)0x49249249u;
            ok &= out[6 * t + 5] == 2;
        }
        report("shuffles_ballot_any_all", ok);
    }
    {
        std::vector<int> out(96 * 4, -1);
        LF_LAUNCH(block_ops, 1, 96, 96 * sizeof(float), nullptr)(out.data());
        bool ok = true;
        for (int t = 0; t < 96; ++t) {
            ok &= out[4 * t] == 95 - t;
            ok &= out[4 * t + 1] == 24;
            ok &= out[4 * t + 2] == 2;
            ok &= out[4 * t + 3] == 1;
        }
        report("block_barriers_shared_memory", ok);
    }
    {
        std::vector<int> out(2 + 3 * 2 * 4 * 2, -1);
        out[0] = 0;
        LF_LAUNCH(grid_ids, dim3(3, 2), dim3(4, 2), 0, nullptr)(out.data());
        bool ok = out[0] == 48 && out[1] == 47;
        for (int by = 0; by < 2; ++by)
            for (int bx = 0; bx < 3; ++bx)
                for (int ty = 0; ty < 2; ++ty)
                    for (int tx = 0; tx < 4; ++tx)
                        ok &= out[2 + (by * 3 + bx) * 8 + ty * 4 + tx] == bx + 10 * by + 100 * tx + 1000 * ty;
        report("grid_block_thread_indices_atomics", ok);
    }
    std::vector<int> iout(1024, 0);
    std::vector<float> fout(1024, 0.f);
    int* ip = iout.data();
    float* fp = fout.data();
    expect_error("error_barrier_after_return", [&] { LF_LAUNCH(early_return_then_barrier, 1, 64, 0, nullptr)(ip); },
                 "exited");
    expect_error("error_partial_warp_full_mask", [&] { LF_LAUNCH(partial_warp_full_mask, 1, 48, 0, nullptr)(fp); },
                 "does not exist");
    expect_error("error_divergent_collectives", [&] { LF_LAUNCH(divergent_collectives, 1, 32, 0, nullptr)(ip); },
                 "different collectives");
    expect_error("error_mask_without_caller", [&] { LF_LAUNCH(mask_without_caller, 1, 32, 0, nullptr)(ip); },
                 "does not name the calling lane");
    expect_error("error_exited_lane_in_mask", [&] { LF_LAUNCH(exited_lane_in_mask, 1, 32, 0, nullptr)(ip); },
                 "has exited");
    {  // the emulator recovers after an error: a good launch still works
        std::vector<int> out(64 * 6, -1);
        LF_LAUNCH(shuffles, 1, 64, 0, nullptr)(out.data());
        report("recovers_after_errors", out[0] == 528);
    }
    return failures ? 1 : 0;
}

// Channel-width dispatch shared by the CPU and CUDA bindings.
//
// Rasterization kernels are templated on the channel width so per-pixel
// accumulators live in fixed-size arrays (registers on the GPU).  Any runtime
// channel count is split into chunks of these widths; a chunk may be padded
// (kernel reads `valid` < width channels, treating the rest as zero).  The
// alpha sequence depends only on geometry, so chunking is exact.
#pragma once

namespace lf {

constexpr int kWidths[] = {1, 2, 3, 4, 8, 9, 16, 32, 64};
constexpr int kNumWidths = sizeof(kWidths) / sizeof(kWidths[0]);

struct Chunk {
    int width;  // template width the kernel runs with
    int valid;  // channels actually read/written (<= width)
};

// Next chunk for `rem` remaining channels: 64 while more than 64 remain,
// else the smallest template width that holds them (padded).  Measured on
// the CPU kernels: one more pass (alpha recomputed) costs as much as ~40
// padded channels, so padding beats splitting (20 -> 32, 33 -> 64 + 0).
inline Chunk next_chunk(int rem) {
    if (rem >= 64) return {64, 64};
    for (int i = 0; i < kNumWidths; ++i)
        if (kWidths[i] >= rem) return {kWidths[i], rem};
    return {64, rem};
}

}  // namespace lf

// Expands BODY with a constexpr int CH for the runtime width W.
#define LF_DISPATCH_WIDTH(W, ...)                        \
    switch (W) {                                         \
        case 1: { constexpr int CH = 1; __VA_ARGS__; break; }   \
        case 2: { constexpr int CH = 2; __VA_ARGS__; break; }   \
        case 3: { constexpr int CH = 3; __VA_ARGS__; break; }   \
        case 4: { constexpr int CH = 4; __VA_ARGS__; break; }   \
        case 8: { constexpr int CH = 8; __VA_ARGS__; break; }   \
        case 9: { constexpr int CH = 9; __VA_ARGS__; break; }   \
        case 16: { constexpr int CH = 16; __VA_ARGS__; break; } \
        case 32: { constexpr int CH = 32; __VA_ARGS__; break; } \
        case 64: { constexpr int CH = 64; __VA_ARGS__; break; } \
        default: break;                                  \
    }

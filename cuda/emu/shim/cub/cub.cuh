// The one cub call langfield's CUDA code makes, for the CPU emulator
// (cuda/emu/shim/cuda_runtime.h): a stable LSD radix sort of (key, value)
// pairs on key bits [begin_bit, end_bit), as cub::DeviceRadixSort::SortPairs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <vector>

namespace cub {

struct DeviceRadixSort {
    template <typename K, typename V>
    static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* values_in,
                                 V* values_out, int n, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                                 cudaStream_t = nullptr) {
        static_assert(std::is_integral<K>::value, "emulated SortPairs handles integer keys");
        using U = std::make_unsigned_t<K>;
        if (temp == nullptr) {  // size query, as cub's first call
            temp_bytes = 1;
            return cudaSuccess;
        }
        // cub orders signed keys by flipping the sign bit, then sorts on the bit range.
        const U flip = std::is_signed<K>::value ? (U)((U)1 << (sizeof(K) * 8 - 1)) : (U)0;
        std::vector<U> k(n), k2(n);
        std::vector<V> v(values_in, values_in + n), v2(n);
        for (int i = 0; i < n; ++i) k[i] = (U)keys_in[i] ^ flip;
        for (int bit = begin_bit; bit < end_bit; bit += 8) {
            const int bits = end_bit - bit < 8 ? end_bit - bit : 8;
            const U digit_mask = (U)((1u << bits) - 1);
            size_t count[257] = {0};
            for (int i = 0; i < n; ++i) ++count[((k[i] >> bit) & digit_mask) + 1];
            for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
            for (int i = 0; i < n; ++i) {
                const size_t pos = count[(k[i] >> bit) & digit_mask]++;
                k2[pos] = k[i];
                v2[pos] = v[i];
            }
            k.swap(k2);
            v.swap(v2);
        }
        for (int i = 0; i < n; ++i) {
            keys_out[i] = (K)(k[i] ^ flip);
            values_out[i] = v[i];
        }
        return cudaSuccess;
    }
};

}  // namespace cub

#pragma once
// Shared-memory tile addressing, routing lookups and mma fragment loaders shared by the kernels.
#include "moejit/ptx.cuh"
#include "moejit/types.cuh"

namespace moejit {

// Row stride, in 16-byte chunks, of a tile whose rows hold `chunks` chunks: a power of two below 8
// and a multiple of 8 from there, so that the swizzle below never leaves the row.
inline constexpr int padded_chunks(int chunks) {
  return chunks >= 8   ? (chunks + 7) / 8 * 8
         : chunks <= 1 ? 1
         : chunks <= 2 ? 2
         : chunks <= 4 ? 4
                       : 8;
}

// A shared-memory tile of ROWS x (CHUNKS * 16 bytes), addressed in 16-byte chunks with an XOR
// swizzle so that the 8 rows an ldmatrix reads at one chunk column hit 8 different bank groups.
template <int ROWS, int CHUNKS>
struct SwizzledTile {
  static constexpr int kStride = padded_chunks(CHUNKS);
  static_assert(CHUNKS >= 1, "a tile row holds at least one 16-byte chunk");
  static_assert(kStride >= 8 || ROWS % (8 / kStride) == 0,
                "narrow tiles must pack whole rows into 128-byte lines");
  static constexpr int kBytes = ROWS * kStride * 16;

  __device__ __forceinline__ static int chunk_offset(int row, int chunk) {
    if constexpr (kStride >= 8) {
      return row * kStride + ((chunk & ~7) | ((chunk ^ row) & 7));
    } else {
      const int linear = row * kStride + chunk;
      const int line = linear >> 3;
      return (line << 3) | ((linear ^ line) & 7);
    }
  }
  // Byte offset of element `col` (of `elem_bytes` bytes each) in `row`.
  __device__ __forceinline__ static int byte_offset(int row, int col, int elem_bytes) {
    const int byte = col * elem_bytes;
    return chunk_offset(row, byte >> 4) * 16 + (byte & 15);
  }
};

// Maps a linear CTA index to (row tile, column tile) in groups of GROUP row tiles: consecutive CTAs
// walk the column tiles of GROUP row tiles together, so a wave reads each weight tile once per
// group (kept in L2 for the group's other row tiles) instead of once per row tile.
template <int N_TILES, int GROUP>
__device__ __forceinline__ void grouped_raster(long long linear, long long& row_tile,
                                               int& col_tile) {
  const long long group = linear / (static_cast<long long>(GROUP) * N_TILES);
  const long long within = linear % (static_cast<long long>(GROUP) * N_TILES);
  row_tile = group * GROUP + within % GROUP;
  col_tile = static_cast<int>(within / GROUP);
}

// Index loads that accept int32 and int64 routing tensors.
template <class Index>
__device__ __forceinline__ long long load_index(const void* base, long long i) {
  return static_cast<long long>(static_cast<const Index*>(base)[i]);
}

// Finds which expert and which BLOCK_M-row slice of it the `tile`-th row tile covers, walking the
// experts' ragged row ranges: expert e owns ceil(rows_e / BLOCK_M) consecutive tiles. Run by one
// full warp; returns false when `tile` is past the last real tile (the grid is an upper bound).
template <class Index, int E, int BLOCK_M>
__device__ __forceinline__ bool find_row_tile(const void* expert_offsets, long long tile,
                                              int& expert, long long& row_begin,
                                              long long& row_end) {
  const int lane = threadIdx.x & 31;
  long long tiles_before = 0;
  for (int base = 0; base < E; base += 32) {
    const int e = base + lane;
    long long end = 0, begin = 0;
    if (e < E) {
      end = load_index<Index>(expert_offsets, e);
      begin = e == 0 ? 0 : load_index<Index>(expert_offsets, e - 1);
    }
    const long long count = e < E ? (end - begin + BLOCK_M - 1) / BLOCK_M : 0;
    long long inclusive = count;
#pragma unroll
    for (int delta = 1; delta < 32; delta <<= 1) {
      const long long up = __shfl_up_sync(0xffffffffu, inclusive, delta);
      if (lane >= delta) inclusive += up;
    }
    const long long first = tiles_before + inclusive - count;
    const bool mine = count > 0 && tile >= first && tile < first + count;
    const unsigned hit = __ballot_sync(0xffffffffu, mine);
    if (hit) {
      const int owner = __ffs(hit) - 1;
      const long long local = __shfl_sync(0xffffffffu, tile - first, owner);
      expert = base + owner;
      const long long b = __shfl_sync(0xffffffffu, begin, owner);
      const long long en = __shfl_sync(0xffffffffu, end, owner);
      row_begin = b + local * BLOCK_M;
      row_end = row_begin + BLOCK_M < en ? row_begin + BLOCK_M : en;
      return true;
    }
    tiles_before += __shfl_sync(0xffffffffu, inclusive, 31);
  }
  return false;
}

// mma B-operand fragments (k16 x n8, "col") for row `n` of an n-major tile holding elements of
// type Src, converted to the operand type Op as a high and a low part (hi = round(v),
// lo = round(v - hi)): two products with them keep about 16 significant bits of v, so a factor
// stored in fp32 or fp16 loses nothing noticeable to bf16 tensor cores. Used where the storage
// dtype differs from the tensor-core dtype, so ldmatrix cannot be used.
template <class Tile, class Src, class Op>
__device__ __forceinline__ void load_b_fragment_split(unsigned (&hi)[2], unsigned (&lo)[2],
                                                      const char* tile, int n, int k) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const Src* p = reinterpret_cast<const Src*>(
        tile + Tile::byte_offset(n, k + 8 * half + 2 * t, sizeof(Src)));
    const float v0 = to_float(p[0]), v1 = to_float(p[1]);
    hi[half] = pack2<Op>(v0, v1);
    const float h0 = to_float(from_float<Op>(v0)), h1 = to_float(from_float<Op>(v1));
    lo[half] = pack2<Op>(v0 - h0, v1 - h1);
  }
}

}  // namespace moejit

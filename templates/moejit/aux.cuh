#pragma once
// Small helpers: packing B_e^T contiguously in the lora dtype (so the dx GEMM loads it like A,
// and the forward reads PEFT's B, with 16-byte copies), and summing the k per-slot dx rows of each
// token in slot order (deterministic, fp32).
#include "moejit/forward.cuh"

namespace moejit {

// Element i of the values held in 16-byte words (unrolled indices stay in registers).
template <class T, int W>
__device__ __forceinline__ T element_of(const unsigned (&words)[W][4], int i) {
  if constexpr (sizeof(T) == 4) {
    return __uint_as_float(words[i / 4][i % 4]);
  } else {
    return T{static_cast<unsigned short>(words[i / 8][i % 8 / 2] >> (16 * (i % 2)))};
  }
}

template <class Cfg>
__global__ void __launch_bounds__(256) pack_lora_b(const AuxParams p) {
  using Lora = typename Cfg::Lora;
  constexpr int E = Cfg::kExperts, N = Cfg::kN, R = Cfg::kRank;
  const Lora* in = static_cast<const Lora*>(p.in);
  Lora* out = static_cast<Lora*>(p.out);
  // A thread copies one (n, j) for 16 consecutive experts (all of them if fewer): adjacent
  // threads write adjacent n, and PEFT's storage holds those experts' elements in one 32-byte
  // sector, which the thread reads once (an expert-major walk read a sector per element), in
  // 16-byte loads where they fill whole aligned 16-byte words.
  constexpr int kExpertsPerThread = E < 16 ? E : 16;
  constexpr int kChunks = (E + kExpertsPerThread - 1) / kExpertsPerThread;
  constexpr int kBytesPerThread = kExpertsPerThread * static_cast<int>(sizeof(Lora));
  constexpr bool kWholeWords =
      Cfg::kBStorage == kBStoragePeft && E % kExpertsPerThread == 0 && kBytesPerThread % 16 == 0;
  const bool vector_loads = kWholeWords && (reinterpret_cast<unsigned long long>(in) & 15) == 0;
  const long long count = static_cast<long long>(kChunks) * R * N;
  for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; idx < count;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(idx % N);
    const long long cj = idx / N;
    const int j = static_cast<int>(cj % R), e0 = static_cast<int>(cj / R) * kExpertsPerThread;
    Lora* column = out + static_cast<long long>(e0) * R * N + static_cast<long long>(j) * N + n;
    if constexpr (kWholeWords) {
      if (vector_loads) {
        constexpr int kWords = kBytesPerThread / 16;
        unsigned words[kWords][4];
        const Lora* first = in + lora_b_index<Cfg::kBStorage, E, N, R>(e0, n, j);
#pragma unroll
        for (int w = 0; w < kWords; ++w) ld_global_16(words[w], first + w * 16 / sizeof(Lora));
#pragma unroll
        for (int de = 0; de < kExpertsPerThread; ++de)
          column[static_cast<long long>(de) * R * N] = element_of<Lora>(words, de);
        continue;
      }
    }
#pragma unroll
    for (int de = 0; de < kExpertsPerThread; ++de)
      if (e0 + de < E)
        column[static_cast<long long>(de) * R * N] =
            in[lora_b_index<Cfg::kBStorage, E, N, R>(e0 + de, n, j)];
  }
}

template <class Cfg>
__global__ void __launch_bounds__(256) reduce_slots(const AuxParams p) {
  using Act = typename Cfg::Act;
  constexpr int K = Cfg::kK, TOPK = Cfg::kTopK;
  const Act* in = static_cast<const Act*>(p.in);
  Act* out = static_cast<Act*>(p.out);
  const long long pairs = p.count * (K / 2);
  for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; idx < pairs;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long t = idx / (K / 2);
    const int c = static_cast<int>(idx % (K / 2)) * 2;
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int j = 0; j < TOPK; ++j) {
      const Act* row = in + (t * TOPK + j) * K + c;
      s0 += to_float(row[0]);
      s1 += to_float(row[1]);
    }
    *reinterpret_cast<unsigned*>(out + t * K + c) = pack2<Act>(s0, s1);
  }
}

}  // namespace moejit

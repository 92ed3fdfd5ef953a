#pragma once
// Small helpers: packing B_e^T contiguously in the lora dtype (so the dx GEMM loads it like A,
// and the forward reads PEFT's B, with 16-byte copies), and summing the k per-slot dx rows of each
// token in slot order (deterministic, fp32).
#include "moejit/forward.cuh"

namespace moejit {

template <class Cfg>
__global__ void __launch_bounds__(256) pack_lora_b(const AuxParams p) {
  using Lora = typename Cfg::Lora;
  constexpr int E = Cfg::kExperts, N = Cfg::kN, R = Cfg::kRank;
  const Lora* in = static_cast<const Lora*>(p.in);
  Lora* out = static_cast<Lora*>(p.out);
  // A thread copies one (n, j) for 16 consecutive experts: adjacent threads write adjacent n,
  // and PEFT's storage holds those 16 experts' elements in one 32-byte sector, which the thread
  // reads once (an expert-major walk read a sector per element).
  constexpr int kExpertsPerThread = 16;
  constexpr int kChunks = (E + kExpertsPerThread - 1) / kExpertsPerThread;
  const long long count = static_cast<long long>(kChunks) * R * N;
  for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; idx < count;
       idx += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(idx % N);
    const long long cj = idx / N;
    const int j = static_cast<int>(cj % R), e0 = static_cast<int>(cj / R) * kExpertsPerThread;
#pragma unroll
    for (int de = 0; de < kExpertsPerThread; ++de) {
      const int e = e0 + de;
      if (e < E)
        out[(static_cast<long long>(e) * R + j) * N + n] =
            in[lora_b_index<Cfg::kBStorage, E, N, R>(e, n, j)];
    }
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

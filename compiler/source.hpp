#pragma once
// Renders the source stub that instantiates exactly one kernel of the embedded templates for one
// (ProjectionSpec, TileConfig) pair, and the launch geometry that goes with it.
#include <cstdint>
#include <string>

#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {

// Bump when the stub or the meaning of a config field changes; part of every cache key.
inline constexpr int kGeneratorVersion = 13;

struct KernelSource {
  std::string source;
  std::string name_expression;
  int threads = 0;
  int dynamic_smem = 0;  // bytes; must equal the template's own layout (checked at compile time)
};

// Throws InvalidArgument for a spec or config that cannot be instantiated.
KernelSource render_kernel_source(const ProjectionSpec& spec, const TileConfig& config);

// Whether the register-operand kernel (TileConfig::rs) can serve spec: a GEMM op over nf4 or
// int8_rowwise weights with lora dtype == act, r <= 64 and a multiple of 4, and the weight's
// contiguous dimension a multiple of 32 (nf4) or 16 (int8).
bool rs_serves(const ProjectionSpec& spec);

// Whether the GEMM kernel of config c reads x in grouped rows (by TMA): over a grouped input, and
// always for the register-operand kernel, whose prologue writes a gathered input's grouped copy
// (ForwardParams::x_grouped).
bool reads_grouped_x(const ProjectionSpec& spec, const TileConfig& c);

// The register-operand kernel's prologue: forward.cuh (mma.sync) in its x * A^T-only mode (y
// null) for the same projection, in the same module under the unmangled name kRsPrologueName.
struct RsPrologue {
  ProjectionSpec spec;
  TileConfig config;
};
RsPrologue rs_prologue(const ProjectionSpec& spec);
inline constexpr const char* kRsPrologueName = "moejit_rs_prologue";

// The ranks a lora_grad CTA covers (its config's block_m): the rank padded to whole 16-rank
// slices of each of its warps_m warps.
int grad_block_m(int rank, int warps_m);
// Empty when config fits the lora_grad kernel of spec (templates/moejit/lora_grad.cuh: warps_n
// splits each stage's rows into 16-row slices, the threads copy whole row pieces of v);
// otherwise what it breaks.
std::string grad_config_problem(const ProjectionSpec& spec, const TileConfig& config);

// Shared memory the kernel for (spec, config) asks for at launch.
int dynamic_smem_bytes(const ProjectionSpec& spec, const TileConfig& config);

struct LaunchDims {
  std::int64_t grid_x = 0;
  int grid_y = 1;
  int threads = 0;
  int dynamic_smem = 0;
};

// Grid for `rows` = T*k grouped rows. GEMM ops: every N tile times an upper bound on the row
// tiles (each expert adds at most one partial tile; surplus CTAs exit at once), capped at
// `resident_ctas` CTAs (those the device holds at once) for the persistent TMA kernel when it is
// known (> 0), and whole clusters. lora_grad: column tiles x experts. Helper ops: a grid-stride
// loop.
LaunchDims launch_dims(const ProjectionSpec& spec, const TileConfig& config, std::int64_t rows,
                       int resident_ctas = 0);

}  // namespace moejit

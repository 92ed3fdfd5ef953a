// forward_probe CACHE_PATH: one untuned Runtime forward on a fixed small problem with the cache at
// CACHE_PATH; checks the result against the float64 reference and prints the RuntimeStats as one
// JSON line. Exit status: 0 correct, 1 wrong result, 2 usage or runtime error. Run by
// cache_reuse_test in separate processes to observe the cache across them.
#include <iostream>
#include <nlohmann/json.hpp>

#include "compiler/error.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/device_problem.hpp"
#include "tests/support/compare.hpp"
#include "tests/support/forward_case.hpp"

namespace moejit::test {
namespace {

ProjectionSpec probe_spec() {
  ProjectionSpec s;
  s.experts = 4;
  s.top_k = 2;
  s.in_features = 64;
  s.out_features = 96;
  s.rank = 8;
  s.grouped_out = true;
  return s;
}

nlohmann::json to_json(const RuntimeStats& s) {
  return {{"launches", s.launches},     {"memory_hits", s.memory_hits},
          {"cache_hits", s.cache_hits}, {"cache_misses", s.cache_misses},
          {"compiles", s.compiles},     {"tunes", s.tunes}};
}

int probe(const std::string& cache_path) {
  const ProjectionSpec spec = probe_spec();
  const ForwardInputs in = make_inputs(spec, 50, RoutingKind::uniform, 3);
  RuntimeOptions options;
  options.cache_path = cache_path;
  options.tune = false;
  Runtime runtime(options);  // its context guard outlives the buffers below
  DeviceProblem problem(spec, in);
  cuda::Stream stream;
  problem.poison_output();
  runtime.forward(spec, problem.args(), stream.get());
  stream.synchronize();
  const std::string why = forward_mismatch(reference_forward(spec, in), problem.download_output(),
                                           spec.out_features, spec.act);
  std::cout << to_json(runtime.stats()).dump() << std::endl;
  if (!why.empty()) std::cerr << "forward_probe: " << spec.describe() << ": " << why << "\n";
  return why.empty() ? 0 : 1;
}

}  // namespace
}  // namespace moejit::test

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: forward_probe CACHE_PATH\n";
    return 2;
  }
  try {
    return moejit::test::probe(argv[1]);
  } catch (const std::exception& e) {
    std::cerr << "forward_probe: " << e.what() << "\n";
    return 2;
  }
}

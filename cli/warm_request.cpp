#include "cli/warm_request.hpp"

#include <functional>

#include "cli/hf_config.hpp"
#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"

namespace moejit::cli {
namespace {

// A CLI11 validator from a moejit check, so a bad spelling is a usage error with the library's
// own message (which lists the accepted values).
CLI::Validator accepted_by(std::function<void(const std::string&)> check) {
  return CLI::Validator(
      [check = std::move(check)](std::string& value) -> std::string {
        try {
          check(value);
          return {};
        } catch (const InvalidArgument& e) {
          return e.what();
        }
      },
      "");
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const ModelPreset& preset : model_presets()) names.emplace_back(preset.name);
  return names;
}

void add_shape_flags(CLI::App& command, WarmFlags& f, CLI::Option* model) {
  auto* experts = command.add_option("--experts", f.experts, "number of experts E");
  auto* top_k = command.add_option("--top-k", f.top_k, "experts per token k");
  auto* hidden = command.add_option("--hidden", f.hidden, "hidden size H");
  auto* inter = command.add_option("--intermediate", f.intermediate, "expert intermediate size I");
  const std::vector<CLI::Option*> shape = {experts, top_k, hidden, inter};
  for (CLI::Option* option : shape) {
    option->excludes(model)->check(CLI::PositiveNumber);
    for (CLI::Option* other : shape)
      if (other != option) option->needs(other);
  }
  command
      .add_option("--layout", f.layout, "base weight layout of the explicit shape: out_in|in_out")
      ->capture_default_str()
      ->excludes(model)
      ->check(accepted_by([](const std::string& v) { parse_weight_layout(v, "--layout"); }));
  command.add_flag("--bias", f.bias, "the explicit shape has expert biases")->excludes(model);
}

}  // namespace

void add_warm_flags(CLI::App& command, WarmFlags& f) {
  auto* model =
      command.add_option("--model", f.model, "model preset")->check(CLI::IsMember(preset_names()));
  auto* hf_config = command
                        .add_option("--hf-config", f.hf_config,
                                    "Hugging Face config.json of the model (experts, top-k, "
                                    "hidden and intermediate sizes, gpt_oss layout)")
                        ->excludes(model);
  auto* from_cache =
      command
          .add_flag("--from-cache", f.from_cache,
                    "tune on this GPU every shape the cache holds an offline build of for its arch")
          ->excludes(model)
          ->excludes(hf_config);
  add_shape_flags(command, f, model);
  for (const char* shape_flag : {"--experts", "--layout", "--bias"}) {
    command.get_option(shape_flag)->excludes(hf_config);
    command.get_option(shape_flag)->excludes(from_cache);
  }
  command.add_option("--tokens", f.tokens, "tokens per step T (bucketed to a power of two)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command.add_option("--rank", f.rank, "LoRA rank r (1 to 256)")->capture_default_str();
  command
      .add_option("--weights", f.weights,
                  "base weight format: bf16|fp16 (also the activations' dtype)|nf4|nf4-dq "
                  "(double quantization)|int8")
      ->capture_default_str()
      ->check(accepted_by([](const std::string& v) { parse_warm_weights(v, "--weights"); }));
  command
      .add_option("--act", f.act,
                  "activation dtype with nf4 or int8 weights: bf16|fp16 (default bf16)")
      ->check(accepted_by([](const std::string& v) { parse_dtype(v, "--act"); }));
  command
      .add_option("--blocksize", f.blocksize,
                  "nf4 quantization blocksize: 32|64|128|256 (default 64)")
      ->check(CLI::IsMember({32, 64, 128, 256}));
  command.add_flag("--forward-only", f.forward_only,
                   "only the forward's kernels (default: the backward's too, as training runs)");
  command.add_option("--lora-dtype", f.lora, "LoRA factor dtype: bf16|fp16|fp32")
      ->capture_default_str()
      ->check(accepted_by([](const std::string& v) { parse_dtype(v, "--lora-dtype"); }));
  // --from-cache takes every field of each kernel from the cached build.
  for (const char* spec_flag : {"--tokens", "--rank", "--weights", "--act", "--blocksize",
                                "--forward-only", "--lora-dtype"})
    command.get_option(spec_flag)->excludes(from_cache);
  command
      .add_option("--arch", f.arch,
                  std::string("NVRTC target without a GPU (default ") + kDefaultOfflineArch +
                      "); with a GPU its own target is used")
      ->check(accepted_by([](const std::string& v) { validate_arch(v); }));
  command.add_flag("--no-tune", f.no_tune, "store the default config instead of autotuning");
  command
      .add_option("--wait", f.wait_seconds,
                  "seconds to wait for another process that warms the same shape before "
                  "building it here too")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

WarmWeights parse_warm_weights(const std::string& text, std::string_view argument) {
  if (text == "nf4-dq") return {WeightFormat::nf4, true};
  if (text == "int8") return {WeightFormat::int8_rowwise, false};
  try {
    return {parse_weight_format(text, argument), false};
  } catch (const InvalidArgument&) {
    throw InvalidArgument(std::string(argument), "'" + text + "'",
                          "bf16, fp16, nf4, nf4-dq, int8 or int8_rowwise");
  }
}

std::vector<WarmTarget> warm_targets(const WarmFlags& f) {
  ModelPreset layer{"custom", f.experts,      f.top_k,
                    f.hidden, f.intermediate, parse_weight_layout(f.layout, "--layout"),
                    f.bias};
  if (!f.model.empty())
    layer = *find_preset(f.model);  // --model was checked against the preset names
  else if (!f.hf_config.empty())
    layer = read_hf_config(f.hf_config).layer;
  else if (f.experts == 0)
    throw CLI::RequiredError(
        "--model, --hf-config, --from-cache or --experts, --top-k, --hidden and --intermediate");

  const WarmWeights weights = parse_warm_weights(f.weights, "--weights");
  const bool quantized = is_quantized(weights.format);
  DType act = weights.format == WeightFormat::fp16 ? DType::fp16 : DType::bf16;
  if (!f.act.empty()) {
    const DType asked = parse_dtype(f.act, "--act");
    if (!quantized && asked != act)
      throw InvalidArgument("--act", "'" + f.act + "'",
                            "the weights' own dtype (" + f.weights +
                                "), or no --act: 16-bit weights set the activations' dtype");
    if (asked != DType::bf16 && asked != DType::fp16)
      throw InvalidArgument("--act", "'" + f.act + "'", "bf16 or fp16");
    act = asked;
  }
  if (f.blocksize != 0 && weights.format != WeightFormat::nf4)
    throw InvalidArgument("--blocksize", std::to_string(f.blocksize),
                          "no --blocksize but with --weights nf4 or nf4-dq");
  const DType lora = parse_dtype(f.lora, "--lora-dtype");

  std::vector<WarmTarget> targets;
  for (Projection projection : {Projection::gate_up, Projection::down}) {
    ProjectionSpec spec = projection_spec(layer, projection, f.rank, act, lora);
    spec.weights = weights.format;
    if (weights.format == WeightFormat::nf4) {
      spec.quant_blocksize = f.blocksize != 0 ? f.blocksize : 64;
      spec.double_quant = weights.double_quant;
    }
    spec.validate();
    targets.push_back({projection, spec, f.tokens});
  }
  return targets;
}

std::vector<WarmTarget> offline_build_targets(const std::vector<CacheEntry>& entries,
                                              const std::string& arch) {
  std::vector<WarmTarget> targets;
  for (const CacheEntry& e : entries)
    if (e.key.device.is_offline() && e.key.device.arch == arch)
      // gate_up reads token rows, down reads the grouped rows gate_up wrote.
      targets.push_back({e.key.spec.grouped_in ? Projection::down : Projection::gate_up, e.key.spec,
                         e.key.token_bucket});
  return targets;
}

}  // namespace moejit::cli

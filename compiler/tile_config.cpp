#include "compiler/tile_config.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <regex>

#include "compiler/error.hpp"

namespace moejit {

std::string TileConfig::name() const {
  return fmt::format("m{}n{}k{}_w{}x{}_s{}{}{}", block_m, block_n, block_k, warps_m, warps_n,
                     stages,
                     rs      ? "_rs"
                     : tma   ? "_tma"
                     : wgmma ? "_wg"
                             : "",
                     cluster_m == 1 ? "" : fmt::format("_c{}", cluster_m));
}

void TileConfig::validate() const {
  auto fail = [&](const char* what) { throw InvalidArgument("tile config", name(), what); };
  if (cluster_m != 1 && (!tma || rs || cluster_m != 2 || block_n < 128))
    fail("cluster_m of 1, or 2 with tma and block_n 128 or 256");
  if (rs) {
    if (!wgmma || !tma) fail("rs: wgmma and tma set as well");
    if (block_m != 128 && block_m != 192 && block_m != 256)
      fail("rs: block_m (rows) of 128, 192 or 256");
    if (block_n != 64 && block_n != 128) fail("rs: block_n (features) of 64 or 128");
    if (block_k != 64) fail("rs: block_k of 64");
    if (warps_m != block_n / 16 || warps_n != 1) fail("rs: warps_m = block_n / 16, warps_n = 1");
    if (stages < 2 || stages > 8) fail("rs: 2 to 8 stages");
    return;
  }
  if (wgmma) {
    if (block_m != 64 && block_m != 128)
      fail("wgmma: block_m of 64 or 128 (one or two warpgroups)");
    if (block_n != 64 && block_n != 128 && block_n != 256) fail("wgmma: block_n of 64, 128 or 256");
    if (block_k != 64) fail("wgmma: block_k of 64");
    if (warps_m != block_m / 16 || warps_n != 1) fail("wgmma: warps_m = block_m / 16, warps_n = 1");
    if (tma) {
      if (stages < 2 || stages > 8) fail("tma: 2 to 8 stages");
    } else if (stages < 3 || stages > 6) {
      fail("wgmma: 3 to 6 stages");
    }
    return;
  }
  if (tma) fail("tma needs wgmma");
  if (warps_m < 1 || warps_n < 1 || warps_m * warps_n > 8) fail("1 to 8 warps");
  if (block_m % (16 * warps_m) != 0) fail("block_m a multiple of 16 * warps_m");
  if (block_n % (16 * warps_n) != 0) fail("block_n a multiple of 16 * warps_n");
  if (block_k != 32 && block_k != 64) fail("block_k of 32 or 64");
  if (stages < 2 || stages > 6) fail("2 to 6 stages");
}

TileConfig parse_tile_config(const std::string& name) {
  static const std::regex kName(
      R"(m(\d{1,4})n(\d{1,4})k(\d{1,4})_w(\d{1,2})x(\d{1,2})_s(\d{1,2})(_wg|_tma|_rs)?(?:_c(2))?)");
  std::smatch m;
  if (!std::regex_match(name, m, kName))
    throw InvalidArgument("tile config", name,
                          "a name like m128n256k64_w8x1_s4_wg: block m, n, k, warps, stages, "
                          "_wg (wgmma), _tma or _rs (register-operand), and _c2 for TMA in "
                          "clusters of two");
  TileConfig c;
  c.block_m = std::stoi(m[1]);
  c.block_n = std::stoi(m[2]);
  c.block_k = std::stoi(m[3]);
  c.warps_m = std::stoi(m[4]);
  c.warps_n = std::stoi(m[5]);
  c.stages = std::stoi(m[6]);
  c.wgmma = m[7].matched;
  c.tma = m[7] == "_tma" || m[7] == "_rs";
  c.rs = m[7] == "_rs";
  if (m[8].matched) c.cluster_m = std::stoi(m[8]);
  c.validate();
  return c;
}

void to_json(nlohmann::json& j, const TileConfig& c) {
  j = nlohmann::json{{"block_m", c.block_m},     {"block_n", c.block_n},
                     {"block_k", c.block_k},     {"warps_m", c.warps_m},
                     {"warps_n", c.warps_n},     {"stages", c.stages},
                     {"wgmma", c.wgmma},         {"tma", c.tma},
                     {"cluster_m", c.cluster_m}, {"rs", c.rs}};
}

void from_json(const nlohmann::json& j, TileConfig& c) {
  j.at("block_m").get_to(c.block_m);
  j.at("block_n").get_to(c.block_n);
  j.at("block_k").get_to(c.block_k);
  j.at("warps_m").get_to(c.warps_m);
  j.at("warps_n").get_to(c.warps_n);
  j.at("stages").get_to(c.stages);
  c.wgmma = j.value("wgmma", false);
  c.tma = j.value("tma", false);
  c.cluster_m = j.value("cluster_m", 1);
  c.rs = j.value("rs", false);
}

}  // namespace moejit

#include "cache/claims.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <random>

namespace moejit {
namespace {

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

std::string first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// A pid identifies a process only within one boot and one pid namespace of one machine.
std::string this_host() {
  struct stat ns {};
  const auto pid_namespace =
      ::stat("/proc/self/ns/pid", &ns) == 0 ? std::to_string(ns.st_ino) : "?";
  return fmt::format("{} boot {} pidns {}", hostname(),
                     first_line("/proc/sys/kernel/random/boot_id"), pid_namespace);
}

bool process_exists(std::int64_t pid) {
  if (pid <= 0) return false;
  // EPERM: it exists but belongs to another user.
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

ClaimOwner ClaimOwner::of_this_process() {
  std::random_device random;
  const std::uint64_t token = (std::uint64_t{random()} << 32) ^ random();
  return ClaimOwner{this_host(), ::getpid(), fmt::format("{:016x}", token)};
}

std::string ClaimOwner::text() const {
  return fmt::format("{} pid {} token {}", host, pid, token);
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<ClaimRow> read_claim(const sqlite::Database& db, const std::string& id) {
  sqlite::Statement row(db, "SELECT owner, host, pid, expires_unix_ms FROM claims WHERE id = :id");
  row.bind(":id", id);
  if (!row.step()) return std::nullopt;
  return ClaimRow{row.text("owner"), row.text("host"), row.integer("pid"),
                  row.integer("expires_unix_ms")};
}

bool blocks(const ClaimRow& row, const ClaimOwner& me, std::int64_t now_ms) {
  if (row.owner == me.text() || row.expires_unix_ms <= now_ms) return false;
  // A process killed while building leaves its claim behind; on this host that shows at once.
  return row.host != me.host || process_exists(row.pid);
}

std::string holder_of(const ClaimRow& row) {
  return fmt::format("pid {} on {}", row.pid, row.host.substr(0, row.host.find(' ')));
}

void write_claim(const sqlite::Database& db, const std::string& id, const ClaimOwner& me,
                 std::int64_t expires_unix_ms) {
  sqlite::Statement insert(db,
                           "INSERT OR REPLACE INTO claims (id, owner, host, pid, expires_unix_ms) "
                           "VALUES (:id, :owner, :host, :pid, :expires)");
  insert.bind(":id", id);
  insert.bind(":owner", me.text());
  insert.bind(":host", me.host);
  insert.bind(":pid", me.pid);
  insert.bind(":expires", expires_unix_ms);
  insert.step();
}

void delete_claim(const sqlite::Database& db, const std::string& id, const ClaimOwner& me) {
  sqlite::Statement erase(db, "DELETE FROM claims WHERE id = :id AND owner = :owner");
  erase.bind(":id", id);
  erase.bind(":owner", me.text());
  erase.step();
}

}  // namespace moejit

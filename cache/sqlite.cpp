#include "cache/sqlite.hpp"

#include <fmt/format.h>
#include <sqlite3.h>
#include <cstring>
#include <thread>
#include <utility>

namespace moejit::sqlite {

void Database::Closer::operator()(sqlite3* db) const noexcept {
  // close_v2 defers the close until the last statement is finalized instead of failing.
  sqlite3_close_v2(db);
}

void Statement::Finalizer::operator()(sqlite3_stmt* stmt) const noexcept {
  sqlite3_finalize(stmt);
}

namespace {

// Generous for kernels and keys, small enough that a hostile file cannot make one value or one
// statement exhaust memory. One attached database: VACUUM attaches its own temporary one.
constexpr std::pair<int, int> kLimits[] = {
    {SQLITE_LIMIT_LENGTH, 256 << 20},
    {SQLITE_LIMIT_SQL_LENGTH, 100000},
    {SQLITE_LIMIT_COLUMN, 100},
    {SQLITE_LIMIT_EXPR_DEPTH, 100},
    {SQLITE_LIMIT_COMPOUND_SELECT, 4},
    {SQLITE_LIMIT_VDBE_OP, 25000},
    {SQLITE_LIMIT_FUNCTION_ARG, 8},
    {SQLITE_LIMIT_ATTACHED, 1},
    {SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 64},
    {SQLITE_LIMIT_VARIABLE_NUMBER, 64},
    {SQLITE_LIMIT_TRIGGER_DEPTH, 1},
};

void harden(sqlite3* db) {
  // The file is shared by every process of the user or comes from elsewhere; a damaged or
  // hostile file must not be able to run SQL functions from its schema or corrupt itself further
  // through writable_schema.
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, nullptr);
  for (const auto& [limit, value] : kLimits) sqlite3_limit(db, limit, value);
  // Checks every b-tree cell against its page while reading, so a crafted file is reported as
  // corrupt instead of being read out of bounds; no memory map of a file another process may
  // truncate.
  sqlite3_exec(db, "PRAGMA cell_size_check=ON; PRAGMA mmap_size=0", nullptr, nullptr, nullptr);
}

// "file:<path>?immutable=1", with the characters that URIs give a meaning escaped.
std::string immutable_uri(const std::filesystem::path& file) {
  std::string uri = "file:";
  for (const char c : std::filesystem::absolute(file).string()) {
    if (c == '%' || c == '?' || c == '#')
      uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    else
      uri += c;
  }
  return uri + "?immutable=1";
}

}  // namespace

Database::Database(const std::filesystem::path& file, Access access, const std::string& name)
    : path_(name.empty() ? file : std::filesystem::path(name)) {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_FULLMUTEX;
  std::string target = file.string();
  if (access == Access::read_write) flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (access == Access::read_only) flags |= SQLITE_OPEN_READONLY;
  if (access == Access::immutable) {
    flags |= SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
    target = immutable_uri(file);
  }
  const int rc = sqlite3_open_v2(target.c_str(), &raw, flags, nullptr);
  db_.reset(raw);  // owned even on failure: SQLite allocates a handle to carry the message
  if (rc != SQLITE_OK) fail(rc, "opening the database");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(kBusyTimeout.count()));
  harden(raw);
}

bool Database::read_only() const {
  return sqlite3_db_readonly(db_.get(), "main") == 1;
}

std::int64_t Database::changes() const {
  return sqlite3_changes64(db_.get());
}

std::vector<std::string> Database::integrity_problems(int limit) const {
  Statement check(*this, fmt::format("PRAGMA integrity_check({})", limit));
  std::vector<std::string> lines;
  while (check.step()) lines.push_back(check.text(0));
  if (lines.size() == 1 && lines.front() == "ok") lines.clear();
  return lines;
}

void Database::fail(int rc, std::string_view doing) const {
  const char* message = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  const std::string text =
      fmt::format("SQLite cache '{}': {} failed: {} (code {})", path_.string(), doing, message, rc);
  const int primary = rc & 0xff;
  // PROTOCOL: a WAL lock race between processes, which SQLite itself says to retry.
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_PROTOCOL)
    throw Busy(text);
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) throw Corrupt(text);
  if (rc == SQLITE_READONLY_ROLLBACK) throw HotJournal(text);
  if (rc == SQLITE_READONLY_CANTINIT || rc == SQLITE_READONLY_DIRECTORY) throw NoWalIndex(text);
  throw CacheError(text);
}

void Database::exec(const char* sql) const {
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, fmt::format("'{}'", sql));
}

std::int64_t Database::query_integer(const char* sql) const {
  Statement statement(*this, sql);
  if (!statement.step()) fail(SQLITE_ERROR, fmt::format("'{}' (no row)", sql));
  return statement.integer(0);
}

std::string Database::query_text(const char* sql) const {
  Statement statement(*this, sql);
  if (!statement.step()) fail(SQLITE_ERROR, fmt::format("'{}' (no row)", sql));
  return statement.text(0);
}

Statement::Statement(const Database& db, std::string_view sql) : db_(db) {
  sqlite3_stmt* raw = nullptr;
  const int rc =
      sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  stmt_.reset(raw);
  if (rc != SQLITE_OK) db.fail(rc, fmt::format("preparing '{}'", sql));
}

int Statement::parameter(const char* name) const {
  const int index = sqlite3_bind_parameter_index(stmt_.get(), name);
  if (index == 0) db_.fail(SQLITE_RANGE, fmt::format("binding unknown parameter {}", name));
  return index;
}

void Statement::check_bind(int rc, const char* name) const {
  if (rc != SQLITE_OK) db_.fail(rc, fmt::format("binding {}", name));
}

void Statement::bind(const char* name, std::string_view text) {
  check_bind(sqlite3_bind_text64(stmt_.get(), parameter(name), text.data(), text.size(),
                                 SQLITE_TRANSIENT, SQLITE_UTF8),
             name);
}

void Statement::bind(const char* name, std::int64_t number) {
  check_bind(sqlite3_bind_int64(stmt_.get(), parameter(name), number), name);
}

void Statement::bind(const char* name, double number) {
  check_bind(sqlite3_bind_double(stmt_.get(), parameter(name), number), name);
}

void Statement::bind_blob(const char* name, std::span<const char> blob) {
  // A null pointer would bind SQL NULL; an empty blob is a value.
  if (blob.empty()) return check_bind(sqlite3_bind_zeroblob(stmt_.get(), parameter(name), 0), name);
  check_bind(
      sqlite3_bind_blob64(stmt_.get(), parameter(name), blob.data(), blob.size(), SQLITE_TRANSIENT),
      name);
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail(rc, fmt::format("running '{}'", sqlite3_sql(stmt_.get())));
}

int Statement::column(const char* name) const {
  const int count = sqlite3_column_count(stmt_.get());
  for (int i = 0; i < count; ++i)
    if (std::strcmp(sqlite3_column_name(stmt_.get(), i), name) == 0) return i;
  db_.fail(SQLITE_RANGE, fmt::format("reading unknown column {}", name));
}

std::string Statement::text(int index) const {
  const auto* chars = sqlite3_column_text(stmt_.get(), index);
  const int size = sqlite3_column_bytes(stmt_.get(), index);
  return chars ? std::string(reinterpret_cast<const char*>(chars), size) : std::string();
}

std::int64_t Statement::integer(int index) const {
  return sqlite3_column_int64(stmt_.get(), index);
}

std::vector<char> Statement::blob(const char* name) const {
  const int index = column(name);
  const auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt_.get(), index));
  const int size = sqlite3_column_bytes(stmt_.get(), index);
  return bytes ? std::vector<char>(bytes, bytes + size) : std::vector<char>();
}

std::string Statement::text(const char* name) const {
  return text(column(name));
}
std::int64_t Statement::integer(const char* name) const {
  return integer(column(name));
}
double Statement::real(const char* name) const {
  return sqlite3_column_double(stmt_.get(), column(name));
}

Transaction::Transaction(const Database& db, Kind kind) : db_(db) {
  db_.exec(kind == Kind::write ? "BEGIN IMMEDIATE" : "BEGIN");
}

Transaction::~Transaction() {
  // Nothing to report from a destructor: a failed rollback leaves SQLite to roll back on close.
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

void copy_database(const Database& source, const Database& target) {
  sqlite3_backup* backup = sqlite3_backup_init(target.handle(), "main", source.handle(), "main");
  if (backup == nullptr)
    target.fail(sqlite3_errcode(target.handle()),
                fmt::format("starting a copy of '{}'", source.path().string()));
  sqlite3_backup_step(backup, -1);
  // finish() returns the first error of the steps and leaves its message on the target.
  if (const int rc = sqlite3_backup_finish(backup); rc != SQLITE_OK)
    target.fail(rc, fmt::format("copying '{}'", source.path().string()));
}

BusyRetry::BusyRetry() : give_up_at_(std::chrono::steady_clock::now() + kBusyTimeout) {}

bool BusyRetry::pause_and_continue() {
  if (std::chrono::steady_clock::now() >= give_up_at_) return false;
  std::this_thread::sleep_for(pause_);
  pause_ = std::min(pause_ * 2, std::chrono::milliseconds(50));
  return true;
}

}  // namespace moejit::sqlite

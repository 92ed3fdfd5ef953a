#include "cache/sqlite.hpp"

#include <fmt/format.h>
#include <sqlite3.h>
#include <cstring>

namespace moejit::sqlite {

void Database::Closer::operator()(sqlite3* db) const noexcept {
  // close_v2 defers the close until the last statement is finalized instead of failing.
  sqlite3_close_v2(db);
}

void Statement::Finalizer::operator()(sqlite3_stmt* stmt) const noexcept {
  sqlite3_finalize(stmt);
}

Database::Database(const std::filesystem::path& path) : path_(path) {
  sqlite3* raw = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db_.reset(raw);  // owned even on failure: SQLite allocates a handle to carry the message
  if (rc != SQLITE_OK) fail(rc, "opening the database");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(kBusyTimeout.count()));
  // The file is shared by every process of the user; a damaged or hostile file must not be able
  // to run SQL functions from its schema or corrupt itself further through writable_schema.
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
}

void Database::fail(int rc, std::string_view doing) const {
  const char* message = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  const std::string text =
      fmt::format("SQLite cache '{}': {} failed: {} (code {})", path_.string(), doing, message, rc);
  const int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) throw Busy(text);
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

Transaction::Transaction(const Database& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
  // Nothing to report from a destructor: a failed rollback leaves SQLite to roll back on close.
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace moejit::sqlite

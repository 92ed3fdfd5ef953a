#pragma once
// Thin RAII owners over the sqlite3 C API for the cache: a connection, prepared statements bound
// and read by parameter/column name, an IMMEDIATE transaction, and retry of transient SQLITE_BUSY.
// Every failure throws CacheError naming the database path, what was being done and SQLite's
// message.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/error.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace moejit::sqlite {

// Another connection holds the lock longer than the busy timeout allowed; the caller may retry.
class Busy : public CacheError {
 public:
  using CacheError::CacheError;
};

// The file is damaged ("database disk image is malformed") or is not a database at all.
class Corrupt : public CacheError {
 public:
  using CacheError::CacheError;
};

// A read-only connection cannot set up WAL's shared memory: no -shm file, in a directory it
// cannot write.
class NoWalIndex : public CacheError {
 public:
  using CacheError::CacheError;
};

// A read-only connection found a hot rollback journal (a writer stopped mid-transaction) that only
// a connection allowed to write can roll back.
class HotJournal : public CacheError {
 public:
  using CacheError::CacheError;
};

inline constexpr std::chrono::milliseconds kBusyTimeout{10000};

// immutable: read-only, and SQLite takes no locks and needs no -shm file. Only for a file that
// no process can be changing, e.g. in a directory that nobody can write.
enum class Access { read_write, read_only, immutable };

class Database;

class Statement {
 public:
  Statement(const Database& db, std::string_view sql);

  void bind(const char* name, std::string_view text);
  void bind(const char* name, std::int64_t number);
  void bind(const char* name, double number);
  void bind_blob(const char* name, std::span<const char> blob);
  // True when a row is ready; false when the statement is done.
  bool step();

  std::string text(const char* column) const;
  std::string text(int index) const;
  std::int64_t integer(const char* column) const;
  std::int64_t integer(int index) const;
  double real(const char* column) const;
  std::vector<char> blob(const char* column) const;

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const noexcept;
  };
  int parameter(const char* name) const;
  int column(const char* name) const;
  void check_bind(int rc, const char* name) const;

  const Database& db_;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
};

class Database {
 public:
  // Opens the file (read_write creates it; ":memory:" is a private in-memory database) with
  // defensive settings, size limits and a busy timeout of kBusyTimeout. `name` replaces the file
  // name in messages and path() when not empty (e.g. "in-memory copy of '<file>'").
  explicit Database(const std::filesystem::path& file, Access access = Access::read_write,
                    const std::string& name = {});

  void exec(const char* sql) const;
  // The single integer a statement such as "PRAGMA user_version" returns.
  std::int64_t query_integer(const char* sql) const;
  // The single text value of e.g. "PRAGMA journal_mode=WAL".
  std::string query_text(const char* sql) const;
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_.get(); }
  // True when SQLite opened the file read-only (e.g. the file or its directory is not writable).
  bool read_only() const;
  // Rows changed by the latest INSERT, UPDATE or DELETE.
  std::int64_t changes() const;
  // The lines of PRAGMA integrity_check (at most `limit`); empty when the file is sound.
  std::vector<std::string> integrity_problems(int limit = 20) const;
  // Throws CacheError (Busy when SQLite says the database is locked) for result code `rc`.
  [[noreturn]] void fail(int rc, std::string_view doing) const;

 private:
  struct Closer {
    void operator()(sqlite3* db) const noexcept;
  };
  std::filesystem::path path_;
  std::unique_ptr<sqlite3, Closer> db_;
};

// BEGIN IMMEDIATE on construction, so that the write lock is taken up front and a busy database is
// reported before any work; rolls back unless commit() was called. A `read` transaction (plain
// BEGIN) instead gives several queries one consistent snapshot.
class Transaction {
 public:
  enum class Kind { write, read };
  explicit Transaction(const Database& db, Kind kind = Kind::write);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  const Database& db_;
  bool open_ = true;
};

// Copies every page of `source` into `target` (SQLite's online backup), replacing its content.
void copy_database(const Database& source, const Database& target);

// The time budget of one retry_while_busy call: sleeps with a growing pause while time is left.
class BusyRetry {
 public:
  BusyRetry();
  // Sleeps and returns true while kBusyTimeout has not passed since construction.
  bool pause_and_continue();

 private:
  std::chrono::steady_clock::time_point give_up_at_;
  std::chrono::milliseconds pause_{1};
};

// Runs `work` again while it throws Busy, until kBusyTimeout has passed since the first try. The
// busy handler already waits inside SQLite; this covers the cases where SQLite returns
// SQLITE_BUSY without calling it (e.g. a lock held while another process switches to WAL).
// The clock lives in BusyRetry, out of line, so that this template has no local that some
// front ends report as unused.
template <class Work>
auto retry_while_busy(Work&& work) {
  for (BusyRetry retry;;) {
    try {
      return work();
    } catch (const Busy&) {
      if (!retry.pause_and_continue()) throw;
    }
  }
}

}  // namespace moejit::sqlite

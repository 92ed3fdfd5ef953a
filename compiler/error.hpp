#pragma once
// The one exception hierarchy of moejit. Every error carries the context needed to act on it.
#include <stdexcept>
#include <string>

namespace moejit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller-supplied value violates the contract: names the argument, the value and the expectation.
class InvalidArgument : public Error {
 public:
  InvalidArgument(const std::string& argument, const std::string& value,
                  const std::string& expected)
      : Error("invalid argument '" + argument + "' = " + value + ": expected " + expected) {}
};

// NVRTC rejected a program; the message holds the compile log, the options and the cache key.
class CompileError : public Error {
 public:
  using Error::Error;
};

// A CUDA driver call failed, or no GPU / driver is present.
class CudaError : public Error {
 public:
  using Error::Error;
};

class NoGpuError : public CudaError {
 public:
  using CudaError::CudaError;
};

// The SQLite cache failed; the message names the database path and SQLite's message.
class CacheError : public Error {
 public:
  using Error::Error;
};

}  // namespace moejit

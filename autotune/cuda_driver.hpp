#pragma once
// The CUDA driver API, opened at run time with dlopen so that every moejit binary starts on a
// machine without a GPU or driver and can say so plainly. RAII owners for the handles moejit uses.
#include <cuda.h>  // types and signatures only; nothing links against libcuda

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace moejit::cuda {

// The driver entry points moejit calls, resolved once through cuGetProcAddress.
struct Api {
// One entry point per line: clang-format keeps this layout (it re-flowed a packed list forever).
#define MOEJIT_CUDA_API(X)        \
  X(cuInit)                       \
  X(cuDriverGetVersion)           \
  X(cuDeviceGetCount)             \
  X(cuDeviceGet)                  \
  X(cuDeviceGetName)              \
  X(cuDeviceGetAttribute)         \
  X(cuDeviceTotalMem)             \
  X(cuCtxGetCurrent)              \
  X(cuCtxSetCurrent)              \
  X(cuCtxGetDevice)               \
  X(cuCtxSynchronize)             \
  X(cuDevicePrimaryCtxRetain)     \
  X(cuDevicePrimaryCtxRelease)    \
  X(cuModuleLoadData)             \
  X(cuModuleUnload)               \
  X(cuModuleGetFunction)          \
  X(cuFuncSetAttribute)           \
  X(cuFuncGetAttribute)           \
  X(cuOccupancyMaxActiveClusters) \
  X(cuLaunchKernel)               \
  X(cuMemAlloc)                   \
  X(cuMemFree)                    \
  X(cuMemAllocAsync)              \
  X(cuMemFreeAsync)               \
  X(cuMemcpyHtoD)                 \
  X(cuMemcpyDtoH)                 \
  X(cuMemcpyHtoDAsync)            \
  X(cuMemsetD8)                   \
  X(cuMemsetD8Async)              \
  X(cuMemGetInfo)                 \
  X(cuStreamCreate)               \
  X(cuStreamCreateWithPriority)   \
  X(cuCtxGetStreamPriorityRange)  \
  X(cuStreamGetPriority)          \
  X(cuStreamWaitEvent)            \
  X(cuStreamDestroy)              \
  X(cuStreamSynchronize)          \
  X(cuEventCreate)                \
  X(cuEventRecord)                \
  X(cuEventSynchronize)           \
  X(cuEventElapsedTime)           \
  X(cuEventDestroy)               \
  X(cuGetErrorString)             \
  X(cuGetErrorName)               \
  X(cuTensorMapEncodeTiled)
#define MOEJIT_DECLARE_FN(name) decltype(&::name) name = nullptr;
  MOEJIT_CUDA_API(MOEJIT_DECLARE_FN)
#undef MOEJIT_DECLARE_FN
};

// The loaded driver, or nullptr with `why_not` saying what is missing (no libcuda, no device).
// Loading happens once per process; the table is immutable afterwards.
const Api* try_api(std::string* why_not = nullptr);
// The loaded driver; throws NoGpuError with the plain reason when there is none.
const Api& api();
// Throws CudaError naming `call` and the driver's error name and text.
void check(CUresult result, const char* call);

// Number of usable GPUs; 0 (never an exception) when there is no driver or device.
int device_count();

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int clock_khz = 0;         // reported (boost) SM clock
  int driver_version = 0;    // e.g. 13000
  int smem_optin_bytes = 0;  // largest dynamic+static shared memory a block may opt in to
  std::size_t total_memory = 0;
  // NVRTC target: "sm_90a" on Hopper (wgmma, setmaxnreg), "sm_<major><minor>" otherwise.
  std::string arch() const;
};
DeviceInfo query_device(int ordinal);

// Makes a context current for the calling thread: keeps the caller's current context (as PyTorch
// sets it) or retains and sets the device's primary context, releasing it on destruction.
class ContextGuard {
 public:
  explicit ContextGuard(int ordinal = 0);
  ~ContextGuard();
  ContextGuard(const ContextGuard&) = delete;
  ContextGuard& operator=(const ContextGuard&) = delete;
  int device() const { return device_; }

 private:
  int device_ = 0;
  bool retained_ = false;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  CUdeviceptr get() const { return ptr_; }
  void* ptr() const { return reinterpret_cast<void*>(ptr_); }
  std::size_t bytes() const { return bytes_; }
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  template <class T>
  void upload(const std::vector<T>& v) {
    upload(v.data(), v.size() * sizeof(T));
  }
  template <class T>
  void download(std::vector<T>& v) const {
    download(v.data(), v.size() * sizeof(T));
  }
  // Sets every byte; returns once the device memory holds the value.
  void fill_bytes(unsigned char value);

 private:
  CUdeviceptr ptr_ = 0;
  std::size_t bytes_ = 0;
};

// Stream-ordered scratch (cuMemAllocAsync): freed on the stream after the work queued on it
// while it lived, also when that work was cut short by an error. `what` names the allocation in
// the error.
class StreamScratch {
 public:
  StreamScratch(std::size_t bytes, CUstream stream, const char* what);
  ~StreamScratch();
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  void* ptr() const { return reinterpret_cast<void*>(ptr_); }

 private:
  CUdeviceptr ptr_ = 0;
  CUstream stream_;
};

class Module {
 public:
  Module() = default;
  explicit Module(const std::vector<char>& cubin);
  ~Module();
  Module(Module&& other) noexcept { *this = std::move(other); }
  Module& operator=(Module&& other) noexcept;
  CUfunction function(const std::string& lowered_name) const;

 private:
  CUmodule module_ = nullptr;
};

class Event {
 public:
  // `timing` false: an event only for ordering streams (cheaper to record and wait on).
  explicit Event(bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(CUstream stream);
  // Makes the work queued on `stream` from now on wait for the work this event last recorded.
  void wait_in(CUstream stream) const;
  // Milliseconds between `start` and this event, after waiting for this one.
  float elapsed_since(const Event& start) const;

 private:
  CUevent event_ = nullptr;
};

class Stream {
 public:
  Stream();
  // One priority step above `than` (or the highest there is): when a kernel on each can start,
  // this stream's blocks are dispatched first.
  static Stream above(CUstream than);
  Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  CUstream get() const { return stream_; }
  void synchronize() const;

 private:
  explicit Stream(std::nullptr_t) {}  // no stream yet
  CUstream stream_ = nullptr;
};

}  // namespace moejit::cuda

#include "autotune/cuda_driver.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <algorithm>

#include "compiler/error.hpp"

namespace moejit::cuda {
namespace {

struct Loaded {
  Api api;
  bool ok = false;
  std::string why_not;
};

Loaded load() {
  Loaded out;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    out.why_not = "no NVIDIA driver found (libcuda.so.1 could not be loaded): no GPU is available";
    return out;
  }
  using GetProc =
      CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
  auto get_proc = reinterpret_cast<GetProc>(dlsym(lib, "cuGetProcAddress_v2"));
  if (!get_proc) {
    out.why_not = "the NVIDIA driver is too old (no cuGetProcAddress_v2); CUDA 12 or newer needed";
    return out;
  }
  bool missing = false;
  std::string missing_names;
#define MOEJIT_RESOLVE(name)                                                                 \
  {                                                                                          \
    void* fn = nullptr;                                                                      \
    CUdriverProcAddressQueryResult status{};                                                 \
    if (get_proc(#name, &fn, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &status) != CUDA_SUCCESS || \
        !fn) {                                                                               \
      missing = true;                                                                        \
      missing_names += " " #name;                                                            \
    }                                                                                        \
    out.api.name = reinterpret_cast<decltype(out.api.name)>(fn);                             \
  }
  MOEJIT_CUDA_API(MOEJIT_RESOLVE)
#undef MOEJIT_RESOLVE
  if (missing) {
    out.why_not = "the NVIDIA driver lacks entry points:" + missing_names;
    return out;
  }
  const CUresult init = out.api.cuInit(0);
  if (init != CUDA_SUCCESS) {
    const char* name = nullptr;
    out.api.cuGetErrorName(init, &name);
    out.why_not = fmt::format("the NVIDIA driver found no usable GPU (cuInit: {})",
                              name ? name : "unknown error");
    return out;
  }
  int count = 0;
  if (out.api.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0) {
    out.why_not = "the NVIDIA driver is present but reports no GPU";
    return out;
  }
  out.ok = true;
  return out;
}

const Loaded& loaded() {
  static const Loaded instance = load();  // immutable after the first call
  return instance;
}

}  // namespace

const Api* try_api(std::string* why_not) {
  const Loaded& l = loaded();
  if (!l.ok && why_not) *why_not = l.why_not;
  return l.ok ? &l.api : nullptr;
}

const Api& api() {
  std::string why;
  const Api* a = try_api(&why);
  if (!a) throw NoGpuError(why);
  return *a;
}

void check(CUresult result, const char* call) {
  if (result == CUDA_SUCCESS) return;
  const char* name = "unknown";
  const char* text = "unknown error";
  if (const Api* a = try_api()) {
    a->cuGetErrorName(result, &name);
    a->cuGetErrorString(result, &text);
  }
  throw CudaError(fmt::format("{} failed: {} ({})", call, name, text));
}

int device_count() {
  const Api* a = try_api();
  int count = 0;
  if (!a || a->cuDeviceGetCount(&count) != CUDA_SUCCESS) return 0;
  return count;
}

std::string DeviceInfo::arch() const {
  return cc_major == 9 && cc_minor == 0 ? "sm_90a" : fmt::format("sm_{}{}", cc_major, cc_minor);
}

DeviceInfo query_device(int ordinal) {
  const Api& a = api();
  DeviceInfo info;
  info.ordinal = ordinal;
  CUdevice dev = 0;
  check(a.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
  char name[256] = {};
  check(a.cuDeviceGetName(name, sizeof(name), dev), "cuDeviceGetName");
  info.name = name;
  auto attribute = [&](CUdevice_attribute attr) {
    int v = 0;
    check(a.cuDeviceGetAttribute(&v, attr, dev), "cuDeviceGetAttribute");
    return v;
  };
  info.cc_major = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  info.cc_minor = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  info.sm_count = attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  info.clock_khz = attribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE);
  info.smem_optin_bytes = attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  check(a.cuDriverGetVersion(&info.driver_version), "cuDriverGetVersion");
  check(a.cuDeviceTotalMem(&info.total_memory, dev), "cuDeviceTotalMem");
  return info;
}

ContextGuard::ContextGuard(int ordinal) {
  const Api& a = api();
  CUcontext current = nullptr;
  check(a.cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  if (current) {
    CUdevice dev = 0;
    check(a.cuCtxGetDevice(&dev), "cuCtxGetDevice");
    device_ = static_cast<int>(dev);
    return;
  }
  CUdevice dev = 0;
  check(a.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
  CUcontext primary = nullptr;
  check(a.cuDevicePrimaryCtxRetain(&primary, dev), "cuDevicePrimaryCtxRetain");
  retained_ = true;
  device_ = ordinal;
  check(a.cuCtxSetCurrent(primary), "cuCtxSetCurrent");
}

ContextGuard::~ContextGuard() {
  if (retained_) {
    // Restore "no current context" before releasing, so the thread never keeps a context whose
    // last reference is gone.
    api().cuCtxSetCurrent(nullptr);
    CUdevice dev = 0;
    api().cuDeviceGet(&dev, device_);
    api().cuDevicePrimaryCtxRelease(dev);
  }
}

StreamScratch::StreamScratch(std::size_t bytes, CUstream stream, const char* what)
    : stream_(stream) {
  check(api().cuMemAllocAsync(&ptr_, bytes == 0 ? 1 : bytes, stream), what);
}
StreamScratch::~StreamScratch() {
  api().cuMemFreeAsync(ptr_, stream_);
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  check(api().cuMemAlloc(&ptr_, bytes == 0 ? 1 : bytes), "cuMemAlloc");
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) api().cuMemFree(ptr_);
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) api().cuMemFree(ptr_);
    ptr_ = std::exchange(other.ptr_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}
void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_)
    throw InvalidArgument("upload bytes", std::to_string(bytes), "<= buffer size");
  if (bytes) check(api().cuMemcpyHtoD(ptr_, host, bytes), "cuMemcpyHtoD");
}
void DeviceBuffer::download(void* host, std::size_t bytes) const {
  if (bytes > bytes_)
    throw InvalidArgument("download bytes", std::to_string(bytes), "<= buffer size");
  if (bytes) check(api().cuMemcpyDtoH(host, ptr_, bytes), "cuMemcpyDtoH");
}
void DeviceBuffer::fill_bytes(unsigned char value) {
  check(api().cuMemsetD8(ptr_, value, bytes_), "cuMemsetD8");
  // Memsets may run asynchronously on the legacy stream, which non-blocking streams do not wait
  // for; finishing here keeps fill-then-launch on any stream ordered.
  check(api().cuStreamSynchronize(nullptr), "cuStreamSynchronize(after cuMemsetD8)");
}

Module::Module(const std::vector<char>& cubin) {
  check(api().cuModuleLoadData(&module_, cubin.data()), "cuModuleLoadData");
}
Module::~Module() {
  if (module_) api().cuModuleUnload(module_);
}
Module& Module::operator=(Module&& other) noexcept {
  if (this != &other) {
    if (module_) api().cuModuleUnload(module_);
    module_ = std::exchange(other.module_, nullptr);
  }
  return *this;
}
CUfunction Module::function(const std::string& lowered_name) const {
  CUfunction fn = nullptr;
  check(api().cuModuleGetFunction(&fn, module_, lowered_name.c_str()), "cuModuleGetFunction");
  return fn;
}

Event::Event(bool timing) {
  check(api().cuEventCreate(&event_, timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING),
        "cuEventCreate");
}
Event::~Event() {
  if (event_) api().cuEventDestroy(event_);
}
void Event::record(CUstream stream) {
  check(api().cuEventRecord(event_, stream), "cuEventRecord");
}
void Event::wait_in(CUstream stream) const {
  check(api().cuStreamWaitEvent(stream, event_, 0), "cuStreamWaitEvent");
}
float Event::elapsed_since(const Event& start) const {
  check(api().cuEventSynchronize(event_), "cuEventSynchronize");
  float ms = 0;
  check(api().cuEventElapsedTime(&ms, start.event_, event_), "cuEventElapsedTime");
  return ms;
}

Stream::Stream() {
  check(api().cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
}
Stream Stream::above(CUstream than) {
  int least = 0, greatest = 0, priority = 0;
  check(api().cuCtxGetStreamPriorityRange(&least, &greatest), "cuCtxGetStreamPriorityRange");
  check(api().cuStreamGetPriority(than, &priority), "cuStreamGetPriority");
  Stream out(nullptr);
  // Lower numbers are higher priorities.
  check(api().cuStreamCreateWithPriority(&out.stream_, CU_STREAM_NON_BLOCKING,
                                         std::max(greatest, priority - 1)),
        "cuStreamCreateWithPriority");
  return out;
}
Stream::~Stream() {
  if (stream_) api().cuStreamDestroy(stream_);
}
void Stream::synchronize() const {
  check(api().cuStreamSynchronize(stream_), "cuStreamSynchronize");
}

}  // namespace moejit::cuda

// The single-rank host the kit uses when no real host is around.
#include <cstdio>
#include <cstdlib>

#include "prefdiff/instance/default_services.hpp"

namespace prefdiff::instance {
namespace {

const char* level_name(pd_log_level level) {
  switch (level) {
    case PD_LOG_DEBUG: return "debug";
    case PD_LOG_INFO: return "info";
    case PD_LOG_WARN: return "warn";
    case PD_LOG_ERROR: return "error";
  }
  return "log";
}

void log_to_stderr(void* /*context*/, pd_log_level level, const char* plugin_id, const char* message) {
  std::fprintf(stderr, "[%s] %s: %s\n", plugin_id != nullptr ? plugin_id : "plugin", level_name(level),
               message != nullptr ? message : "");
}

void ignore_metric(void* /*context*/, const char* /*plugin_id*/, const char* /*name*/, double /*value*/) {}

void* allocate(void* /*context*/, size_t bytes, size_t alignment) {
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  void* pointer = nullptr;
  return posix_memalign(&pointer, alignment, bytes == 0 ? 1 : bytes) == 0 ? pointer : nullptr;
}

void release(void* /*context*/, void* pointer) { std::free(pointer); }

pd_status identity_all_reduce(void* /*context*/, double* /*values*/, size_t /*count*/, pd_error* /*error*/) {
  return PD_OK;
}

}  // namespace

const pd_host_services* default_host_services() {
  static const pd_host_services services = [] {
    pd_host_services s{};
    s.struct_size = sizeof(pd_host_services);
    s.context = nullptr;
    s.log = &log_to_stderr;
    s.metric = &ignore_metric;
    s.allocate = &allocate;
    s.release = &release;
    s.all_reduce_sum = &identity_all_reduce;
    s.rank = 0;
    s.world_size = 1;
    return s;
  }();
  return &services;
}

}  // namespace prefdiff::instance

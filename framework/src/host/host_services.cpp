#include "prefdiff/host/host_services.hpp"

#include <mutex>

#include <spdlog/spdlog.h>

#include "prefdiff/instance/default_services.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff {
namespace {

struct HostState {
  std::mutex mutex;
  AllReduceSum all_reduce;
  std::map<std::string, double> metrics;
};

HostState& state() {
  static HostState s;
  return s;
}

void log_service(void*, pd_log_level level, const char* plugin_id, const char* message) {
  const char* id = plugin_id != nullptr ? plugin_id : "plugin";
  const char* text = message != nullptr ? message : "";
  switch (level) {
    case PD_LOG_DEBUG: spdlog::debug("[{}] {}", id, text); break;
    case PD_LOG_INFO: spdlog::info("[{}] {}", id, text); break;
    case PD_LOG_WARN: spdlog::warn("[{}] {}", id, text); break;
    default: spdlog::error("[{}] {}", id, text); break;
  }
}

void metric_service(void*, const char* plugin_id, const char* name, double value) {
  if (name == nullptr) return;
  std::lock_guard<std::mutex> lock(state().mutex);
  state().metrics[std::string(plugin_id != nullptr ? plugin_id : "plugin") + "/" + name] = value;
}

pd_status all_reduce_service(void*, double* values, size_t count, pd_error* error) {
  return sdk::guard(error, [&] {
    AllReduceSum reduce;
    {
      std::lock_guard<std::mutex> lock(state().mutex);
      reduce = state().all_reduce;
    }
    if (reduce) reduce(values, count);  // no group: a single rank, the sum is the identity
  });
}

// The plugin-instance layer's single-rank table (struct_size, allocate, release, rank 0 of 1) with the
// host's logging, metrics and data-parallel all-reduce.
pd_host_services& services() {
  static pd_host_services s = [] {
    pd_host_services table = *instance::default_host_services();
    table.log = &log_service;
    table.metric = &metric_service;
    table.all_reduce_sum = &all_reduce_service;
    return table;
  }();
  return s;
}

}  // namespace

const pd_host_services* host_services() { return &services(); }

void set_host_group(int rank, int world_size, AllReduceSum all_reduce) {
  std::lock_guard<std::mutex> lock(state().mutex);
  services().rank = rank;
  services().world_size = world_size;
  state().all_reduce = std::move(all_reduce);
}

std::map<std::string, double> take_plugin_metrics() {
  std::lock_guard<std::mutex> lock(state().mutex);
  std::map<std::string, double> out;
  out.swap(state().metrics);
  return out;
}

}  // namespace prefdiff

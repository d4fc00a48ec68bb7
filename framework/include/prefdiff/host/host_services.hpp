// The services the host injects into tier-1 plugins (logging, metrics, allocation, all-reduce).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "prefdiff/abi.h"

namespace prefdiff {

// Sums `count` doubles in place over the data-parallel group. Installed by the distributed runtime.
using AllReduceSum = std::function<void(double* values, size_t count)>;

// The process-wide service table handed to every plugin (it must outlive all plugins).
const pd_host_services* host_services();

// Configure the data-parallel group seen by plugins (before plugin instances are created).
void set_host_group(int rank, int world_size, AllReduceSum all_reduce);

// Metrics reported by plugins since the last call, keyed "<plugin id>/<name>" (last value wins).
std::map<std::string, double> take_plugin_metrics();

}  // namespace prefdiff

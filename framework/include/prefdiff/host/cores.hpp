// How many cores this process may use (its CPU affinity, so taskset and cgroup cpusets count), at least 1.
// Training, evaluation and the sweep runner divide these among ranks, threads and jobs.
#pragma once

namespace prefdiff {

int available_cores();

}  // namespace prefdiff

// The host services of a single rank when no real host is around (the conformance kit, tools, tests):
// identity all-reduce, log lines to stderr, metrics ignored, aligned host allocation. The host starts
// from this table and replaces what it provides itself.
#ifndef PREFDIFF_INSTANCE_DEFAULT_SERVICES_HPP
#define PREFDIFF_INSTANCE_DEFAULT_SERVICES_HPP

#include "prefdiff/abi.h"

namespace prefdiff::instance {

const pd_host_services* default_host_services();

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_DEFAULT_SERVICES_HPP

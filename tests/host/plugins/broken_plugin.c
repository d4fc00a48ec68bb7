/* Deliberately broken tier-1 plugins, one per BROKEN_* define, to test that the host refuses each
 * with a clear message instead of crashing. */
#include <string.h>

#include <prefdiff/abi.h>
#include <prefdiff/objective.h>

static pd_objective_functions functions = {sizeof(pd_objective_functions), 0, 0, 0, 0, 0, 0, 0};
static pd_plugin_descriptor descriptor = {sizeof(pd_plugin_descriptor), PD_ABI_MAJOR, PD_ABI_MINOR, PD_KIND_OBJECTIVE,
                                          "broken", "0.0.0", "broken on purpose", "none", "none", 0, 0, 0, 0,
                                          &functions};

#if defined(BROKEN_MISSING_SYMBOL)
PD_EXPORT int not_the_entry_point(void) { return 0; }
#else
PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t host_major, uint32_t host_minor, const pd_host_services* host,
                                          const pd_plugin_descriptor** out, pd_error* error) {
  (void)host_major; (void)host_minor; (void)host; (void)error;
#if defined(BROKEN_ABI_MAJOR)
  descriptor.abi_major = PD_ABI_MAJOR + 98u;
#elif defined(BROKEN_TINY_DESCRIPTOR)
  descriptor.struct_size = 8;
#elif defined(BROKEN_ENTRY_FAILS)
  if (error && error->message) strncpy(error->message, "the plugin's own reason: license file missing", error->capacity - 1);
  return PD_ERR_INTERNAL;
#elif defined(BROKEN_TINY_TABLE)
  functions.struct_size = 4;
#elif defined(BROKEN_NULL_FUNCTION)
  /* a table of the right size whose functions are all NULL: it used to be listed as fine, then crash
   * `plugins check`, `plugins eval`, `recipe validate` and `train --dry-run` on the first call */
#endif
  *out = &descriptor;
  return PD_OK;
}
#endif

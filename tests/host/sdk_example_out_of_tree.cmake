# Installs the SDK alone into a temporary prefix, builds sdk/examples/ipo_objective against that
# installed package (as a third party would), then checks that prefdiff lists it with the SDK's ABI
# minor version (1.1), loads it next to the first-party plugins (its id, example-ipo, must not clash with
# the first-party ipo) and that it passes the conformance kit.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "failed (${code}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} -S ${SDK_SOURCE} -B ${WORK_DIR}/sdk-build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/sdk-build)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/sdk-build --prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} -S ${EXAMPLE_SOURCE} -B ${WORK_DIR}/example-build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/example-build)

# `plugins list` exits non-zero on any load problem, a duplicate id among them.
run(${PREFDIFF} --plugin-path ${WORK_DIR}/example-build plugins list)
if(NOT last_output MATCHES "example-ipo +objective +1\\.0\\.0 +1\\.1 ")
  message(FATAL_ERROR "the example plugin is not listed with ABI 1.1:\n${last_output}")
endif()
run(${PREFDIFF} --plugin-path ${WORK_DIR}/example-build plugins check example-ipo)
message(STATUS "${last_output}")
run(${PREFDIFF} --plugin-path ${WORK_DIR}/example-build plugins eval example-ipo tau=0.25 --margins 0,2)
if(NOT last_output MATCHES "\"loss\"")
  message(FATAL_ERROR "plugins eval printed no losses:\n${last_output}")
endif()
# The installed SDK also ships the standalone checker for hosts-free use.
if(EXISTS ${WORK_DIR}/prefix/bin/prefdiff-plugin-check)
  file(GLOB lib ${WORK_DIR}/example-build/*.so)
  run(${WORK_DIR}/prefix/bin/prefdiff-plugin-check ${lib})
else()
  message(FATAL_ERROR "the installed SDK lacks bin/prefdiff-plugin-check")
endif()

# docs/recipes.md must contain `prefdiff recipe schema` verbatim, so the reference never drifts from
# the code.
execute_process(COMMAND ${PREFDIFF} recipe schema OUTPUT_VARIABLE schema RESULT_VARIABLE code)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "prefdiff recipe schema failed (${code})")
endif()
file(READ ${DOC} doc)
string(FIND "${doc}" "${schema}" position)
if(position EQUAL -1)
  message(FATAL_ERROR "${DOC} is out of date: regenerate its tables with `prefdiff recipe schema` (see the end of that file)")
endif()

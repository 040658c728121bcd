# Executes one notebook for CTest (see notebooks.cmake):
#   cmake -DJUPYTER=... -DNOTEBOOK=... -DOUT_DIR=... -P run_notebook.cmake
if(NOT JUPYTER)
  message(FATAL_ERROR "jupyter not found in /usr/bin: install the packages of scripts/debian-packages.txt "
                      "(jupyter-nbconvert python3-ipykernel python3-numpy python3-matplotlib)")
endif()
file(READ ${NOTEBOOK} text)
if(text MATCHES "\"output_type\"" OR text MATCHES "\"execution_count\": [0-9]")
  message(FATAL_ERROR "${NOTEBOOK}: holds outputs; commit notebooks with their outputs cleared "
                      "(jupyter nbconvert --clear-output --inplace ${NOTEBOOK})")
endif()
file(MAKE_DIRECTORY ${OUT_DIR})
execute_process(
  COMMAND ${JUPYTER} nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600
          --output-dir ${OUT_DIR} ${NOTEBOOK}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${NOTEBOOK}: execution failed (exit code ${result})")
endif()

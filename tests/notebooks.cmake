# The notebooks of notebooks/, executed headless as tests: each runs with
# Debian's jupyter (`jupyter nbconvert --to notebook --execute`, python3
# kernel) against this build's mplug-owl2 (MPLUG_OWL2_BUILD), and a cell that
# raises — an assert included — fails its test. The committed notebooks must
# carry no outputs; the executed copies go to the build folder.
# They need the program, so they are tested when it is built.
if(TARGET mplug-owl2)
  find_program(MPLUG_OWL2_JUPYTER jupyter PATHS /usr/bin NO_DEFAULT_PATH)
  file(GLOB MPLUG_OWL2_NOTEBOOKS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/notebooks/*.ipynb)
  foreach(notebook ${MPLUG_OWL2_NOTEBOOKS})
    get_filename_component(name ${notebook} NAME_WE)
    add_test(NAME notebook:${name}
      COMMAND ${CMAKE_COMMAND}
        -DJUPYTER=${MPLUG_OWL2_JUPYTER}
        -DNOTEBOOK=${notebook}
        -DOUT_DIR=${CMAKE_CURRENT_BINARY_DIR}/notebooks
        -P ${CMAKE_CURRENT_SOURCE_DIR}/run_notebook.cmake)
    set_tests_properties(notebook:${name} PROPERTIES
      ENVIRONMENT "MPLUG_OWL2_BUILD=${PROJECT_BINARY_DIR};PYDEVD_DISABLE_FILE_VALIDATION=1"
      TIMEOUT 900)
  endforeach()
endif()

# vmmem-bench: cost of a vmmem read round on the sim backend (see
# contrib/vmmem-bench.sh). Not a test: run it by hand.
if(TARGET membal_backend)
  add_executable(vmmem-bench ${CMAKE_CURRENT_LIST_DIR}/vmmem-bench.c)
  target_link_libraries(vmmem-bench PRIVATE membal_backend)
endif()

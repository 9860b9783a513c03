# membal: the operator's command (status, hold, release, reserve) for the
# running balancer, through its control socket.
add_executable(membal-cmd ${CMAKE_CURRENT_LIST_DIR}/membal.c)
set_target_properties(membal-cmd PROPERTIES OUTPUT_NAME membal)
install(TARGETS membal-cmd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT dom0)

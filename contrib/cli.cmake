# membal: the operator's command (status, hold, release, reserve) for the
# running balancer, through its control socket.
add_executable(membal-cmd ${CMAKE_CURRENT_LIST_DIR}/membal.c)
set_target_properties(membal-cmd PROPERTIES OUTPUT_NAME membal)
target_link_libraries(membal-cmd PRIVATE membal_policy)
install(TARGETS membal-cmd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dom0)
# Hooks that make room before a VM starts: an `xl create` wrapper and
# libvirt's qemu hook (see their headers).
install(PROGRAMS ${CMAKE_CURRENT_LIST_DIR}/membal-xl-create
                 ${CMAKE_CURRENT_LIST_DIR}/membal-libvirt-hook
        DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dom0)

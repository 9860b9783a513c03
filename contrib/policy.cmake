# membal-policy: the policy core on a host description file, prints the
# decision table (contrib/sample-host.txt is an example).
add_executable(membal-policy ${CMAKE_CURRENT_LIST_DIR}/membal-policy.c)
target_link_libraries(membal-policy PRIVATE membal_policy)
install(TARGETS membal-policy RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dom0)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/sample-host.txt
        DESTINATION ${CMAKE_INSTALL_DATADIR}/membal COMPONENT dom0)

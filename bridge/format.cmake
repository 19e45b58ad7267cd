# bridge/format.cmake - message text conversion between WhatsApp markup and Matrix HTML
# (bridge/format.h, docs/formatting.md) and its test.
target_sources(wb_bridge PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/format.c)
if(NOT WABRIDGE_FUZZ)
  add_executable(test_format ${CMAKE_SOURCE_DIR}/tests/bridge/test_format.c)
  target_include_directories(test_format PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(test_format PRIVATE wb_bridge)
  add_test(NAME test_format COMMAND test_format)
endif()

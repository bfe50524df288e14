// ember's version. The top-level CMakeLists.txt reads these three numbers for project(VERSION),
// so this file is the one place to change it; find_package(ember 0.1) compares against it.
#pragma once

#define EMBER_VERSION_MAJOR 0
#define EMBER_VERSION_MINOR 1
#define EMBER_VERSION_PATCH 0
#define EMBER_VERSION_STRING "0.1.0"

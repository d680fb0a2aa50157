// The assertion used by the csrc/core unit tests: counts failures and keeps going, so one
// run reports every failing case; main() returns non-zero when `failures` is not zero.
#pragma once

#include <cstdio>

static int failures = 0;

#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      ++failures;                                                 \
      std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                   \
      std::printf("\n");                                          \
    }                                                             \
  } while (0)

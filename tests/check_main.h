/*
 * tests/check_main.h — shared entry point for Check-based test programs.
 *
 * Each test program defines test_suite(); check_main.c runs it with TAP written to stdout so
 * automake's tap-driver counts every test case, and exits non-zero if any failed.
 */
#ifndef ADB_TESTS_CHECK_MAIN_H
#define ADB_TESTS_CHECK_MAIN_H

#include <check.h>

Suite *test_suite(void);

/* Timeout for long randomized cases, in seconds (sanitizer builds are ~10x slower). */
#define TEST_LONG_TIMEOUT 900

#endif

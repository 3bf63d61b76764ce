/*
 * tests/check_main.c — runs the program's suite, TAP on stdout (see check_main.h).
 */
#include "tests/check_main.h"

#include <stdlib.h>

int main(void)
{
    SRunner *sr = srunner_create(test_suite());
    srunner_set_tap(sr, "-");
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * common/why.c — see why.h.
 */
#include "config.h"

#include "common/why.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void why_set(char *why, size_t why_len, const char *fmt, ...)
{
    if (why == NULL || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

void why_append(char *why, size_t why_len, const char *fmt, ...)
{
    if (why == NULL || why_len == 0)
        return;
    size_t n = strnlen(why, why_len);
    if (n + 1 >= why_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, why_len - n, fmt, ap);
    va_end(ap);
}

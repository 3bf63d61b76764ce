/*
 * common/why.h — filling the `why` buffer that every fallible call takes.
 *
 * Fallible functions return a status and explain it in a caller-owned buffer (char *why,
 * size_t why_len; either may be NULL/0 when the caller does not want the text). These helpers
 * write or extend that text, always terminated, never overflowing.
 */
#ifndef ADB_COMMON_WHY_H
#define ADB_COMMON_WHY_H

#include <stddef.h>

/* Replaces the text. */
__attribute__((format(printf, 3, 4))) void why_set(char *why, size_t why_len, const char *fmt, ...);

/* Appends to the text already there. */
__attribute__((format(printf, 3, 4))) void why_append(char *why, size_t why_len, const char *fmt, ...);

#endif

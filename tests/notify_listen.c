/* tests/notify_listen.c — stands in for systemd's notification socket in tests.
 *
 * notify_listen PATH SECONDS: binds an AF_UNIX datagram socket at PATH and prints every
 * sd_notify message it receives, one per line as "MS MESSAGE" (milliseconds since start,
 * newlines in the message turned into spaces), until SECONDS pass or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: notify_listen PATH SECONDS\n");
        return 64;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "notify_listen: path too long\n");
        return 64;
    }
    strcpy(sa.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    unlink(argv[1]);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("notify_listen: bind");
        return 71;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long long start = now_ms(), end = start + atoll(argv[2]) * 1000;
    char buf[4096];
    while (now_ms() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n')
                buf[i] = ' ';
        printf("%lld %s\n", now_ms() - start, buf);
    }
    unlink(argv[1]);
    return 0;
}

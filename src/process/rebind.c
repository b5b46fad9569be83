/*
 * rebind: an LD_PRELOAD shim that websockify embeds and hands to a wrapped program.
 *
 * When the program binds a TCP socket to port REBIND_OLD_PORT (the port websockify listens on),
 * the bind goes to port REBIND_NEW_PORT on loopback instead, where only websockify (and local
 * users) can reach it. Everything else binds as asked.
 *
 *   IPv4 (any address)               -> 127.0.0.1:NEW
 *   IPv6, including a dual-stack ::  -> [::1]:NEW  (the socket keeps its IPV6_V6ONLY setting;
 *                                       ::1 is IPv6 only either way, so a program that binds
 *                                       0.0.0.0 and :: on separate sockets still gets both)
 *   IPv4-mapped IPv6 (::ffff:a.b.c.d) -> [::ffff:127.0.0.1]:NEW
 *
 * websockify connects to 127.0.0.1:NEW, then [::1]:NEW. Datagram sockets are never moved:
 * websockify relays TCP only, and a program's UDP port is none of its business.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

/* A port from the environment: 1-65535, digits only; 0 when unset or malformed. */
static int env_port(const char *name)
{
    const char *text = getenv(name);
    char *end = NULL;
    long port;

    if (text == NULL || *text == '\0')
        return 0;
    errno = 0;
    port = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
        return 0;
    return (int)port;
}

static int is_stream(int fd)
{
    int type = 0;
    socklen_t len = sizeof(type);

    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static bind_fn real_bind;
    int old_port, new_port;

    if (real_bind == NULL) {
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
        if (real_bind == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    old_port = env_port("REBIND_OLD_PORT");
    new_port = env_port("REBIND_NEW_PORT");
    if (addr == NULL || old_port == 0 || new_port == 0 || !is_stream(fd))
        return real_bind(fd, addr, len);

    if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in moved;

        memcpy(&moved, addr, sizeof(moved));
        if (ntohs(moved.sin_port) != old_port)
            return real_bind(fd, addr, len);
        moved.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        moved.sin_port = htons((unsigned short)new_port);
        return real_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
    }
    if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 moved;

        memcpy(&moved, addr, sizeof(moved));
        if (ntohs(moved.sin6_port) != old_port)
            return real_bind(fd, addr, len);
        if (IN6_IS_ADDR_V4MAPPED(&moved.sin6_addr)) {
            static const unsigned char mapped_loopback[16] = {
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
            memcpy(&moved.sin6_addr, mapped_loopback, sizeof(mapped_loopback));
        } else {
            moved.sin6_addr = in6addr_loopback;
        }
        moved.sin6_port = htons((unsigned short)new_port);
        moved.sin6_scope_id = 0;
        return real_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
    }
    return real_bind(fd, addr, len);
}

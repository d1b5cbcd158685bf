/* The compiled `calico` / `calico-ipam` launcher: hand the call to the node's CNI server.
 *
 * Speaks exactly the protocol of calico/cni/fastpath.py (the Python launcher) and server.py:
 *
 *   request:  "CNI2\n" + "KEY=VALUE\0"... + "\0" + stdin bytes, then shutdown(SHUT_WR);
 *             the environment plus CALICO_PLUGIN and CALICO_NETNS_INO (inode of our netns);
 *             the first bytes carry a descriptor of our root directory (SCM_RIGHTS), through
 *             which the server resolves the call's paths as we would (our mount namespace)
 *   reply:    "<exit code>\n<len(stdout)>\n" + stdout + stderr; anything else (e.g. "FALLBACK\n",
 *             a reply cut short) means: run the call in-process.
 *
 * On ANY trouble (no netns inode, socket path too long, no socket, connect refused, a failed or
 * short write/read, a timeout, FALLBACK, a malformed or oversized reply, an oversized config) it
 * execv()s the Python launcher CALICO_PY_DIR "/.<plugin>-py" with the original argv and
 * environment. Stdin is read first (up to MAX_STDIN, as fastpath reads it before connecting);
 * once any of it was read, the fallback gets the same bytes (those read plus the unread rest)
 * through a memfd (or an unlinked temp file) as its stdin.
 *
 * The plugin is "calico-ipam" when the executable's name (/proc/self/exe, else argv[0]) starts
 * with "calico-ipam", else "calico": one binary is installed under both names.
 *
 * Build (calico.cni.install does this): cc -std=c99 -O2 -Wall -Werror
 *   -DCALICO_SOCKET='"/var/run/calico/cni-{netns}.sock"' -DCALICO_PY_DIR='"/opt/cni/bin"'
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef CALICO_SOCKET
#define CALICO_SOCKET "/var/run/calico/cni-{netns}.sock"
#endif
#ifndef CALICO_PY_DIR
#error "define CALICO_PY_DIR: the directory holding .calico-py and .calico-ipam-py"
#endif

#define MAX_STDIN (1u << 20) /* config bytes we forward; a bigger config runs in Python */
#define MAX_REPLY (8u << 20) /* reply bytes we accept; a bigger reply runs in Python */
#define TIMEOUT_S 300        /* as fastpath.TIMEOUT: no reply by then -> run in-process */

#if defined(__GNUC__)
#define NORETURN __attribute__((noreturn))
#else
#define NORETURN
#endif

extern char **environ;

static char **g_argv;
static const char *g_plugin = "calico";
static char *in_buf;      /* stdin bytes read so far */
static size_t in_len;     /* how many */
static int in_read;       /* 1 once stdin was (partly) consumed: the fallback must get a copy */
static int in_eof;        /* 1 when all of stdin is in in_buf */

/* A CNI error on stdout (the runtime shows it) when even the fallback cannot run. */
static NORETURN void die(const char *what, int err) {
    const char *why = strerror(err);
    if (printf("{\"cniVersion\": \"0.4.0\", \"code\": 999, \"msg\": \"calico launcher: %s: %s\"}\n",
               what, why) < 0 ||
        fflush(stdout) != 0) {
        /* nothing more we can tell anyone */
    }
    if (fprintf(stderr, "calico launcher: %s: %s\n", what, why) < 0) {
        /* as above */
    }
    exit(1);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* a server gone mid-call: EPIPE, no signal */
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Send p[0..n) with a descriptor of our root directory attached to the first bytes. */
static int send_with_root(int fd, const char *p, size_t n) {
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -1;
    struct iovec iov;
    iov.iov_base = (void *)p;
    iov.iov_len = n;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &root, sizeof(int));
    ssize_t w;
    do {
        w = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    int saved = errno;
    if (close(root) != 0 || w < 0) {
        errno = w < 0 ? saved : errno;
        return -1;
    }
    return send_all(fd, p + w, n - (size_t)w);
}

/* A file holding the stdin bytes read so far and the rest of stdin, positioned at 0. */
static int stdin_copy(void) {
    int fd = -1;
#ifdef SYS_memfd_create
    fd = (int)syscall(SYS_memfd_create, "calico-stdin", 1u /* MFD_CLOEXEC */);
#endif
    if (fd < 0) {
        char path[] = "/tmp/calico-stdin-XXXXXX";
        fd = mkstemp(path);
        if (fd < 0)
            return -1;
        if (unlink(path) != 0) {
            (void)close(fd);
            return -1;
        }
    }
    if (write_all(fd, in_buf, in_len) != 0)
        goto fail;
    while (!in_eof) { /* an oversized config: the rest streams into the copy */
        char chunk[65536];
        ssize_t r = read(0, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) /* EOF, or an error the Python launcher could not have read past either */
            break;
        if (write_all(fd, chunk, (size_t)r) != 0)
            goto fail;
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        goto fail;
    return fd;
fail:
    (void)close(fd);
    return -1;
}

/* Run the Python launcher for this plugin in this process: same argv, environment, stdin. */
static NORETURN void fallback(void) {
    static char path[4096];
    int n = snprintf(path, sizeof path, "%s/.%s-py", CALICO_PY_DIR, g_plugin);
    if (n < 0 || (size_t)n >= sizeof path)
        die("fallback path too long", ENAMETOOLONG);
    if (in_read) {
        int fd = stdin_copy();
        if (fd < 0)
            die("cannot keep stdin for the fallback", errno);
        if (fd != 0) {
            if (dup2(fd, 0) != 0) /* the dup has no FD_CLOEXEC */
                die("cannot keep stdin for the fallback", errno);
            (void)close(fd);
        }
    }
    execv(path, g_argv);
    die(path, errno);
}

static void read_stdin(void) {
    in_buf = malloc(MAX_STDIN + 1);
    if (in_buf == NULL)
        fallback(); /* stdin untouched */
    while (in_len <= MAX_STDIN) {
        ssize_t r = read(0, in_buf + in_len, MAX_STDIN + 1 - in_len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fallback(); /* the copy holds what was read; Python meets the same error */
        }
        if (r == 0) {
            in_eof = 1;
            return;
        }
        in_read = 1;
        in_len += (size_t)r;
    }
    fallback(); /* more than MAX_STDIN bytes */
}

static const char *plugin_name(const char *argv0) {
    static char exe[4096];
    const char *name = argv0 ? argv0 : "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        name = exe;
    }
    const char *slash = strrchr(name, '/');
    if (slash)
        name = slash + 1;
    /* "calico-ipam (deleted)" when a new install replaced the file while we run */
    return strncmp(name, "calico-ipam", 11) == 0 ? "calico-ipam" : "calico";
}

/* CALICO_SOCKET with each "{netns}" replaced by ino; fallback() when it does not fit. */
static void socket_path(struct sockaddr_un *sa, const char *ino) {
    const char *t = CALICO_SOCKET;
    size_t used = 0, cap = sizeof sa->sun_path - 1;
    if (*t == '\0')
        fallback();
    while (*t) {
        const char *piece = t;
        size_t len = 1;
        if (strncmp(t, "{netns}", 7) == 0) {
            piece = ino;
            len = strlen(ino);
            t += 7;
        } else {
            t += 1;
        }
        if (used + len > cap)
            fallback(); /* Python: "AF_UNIX path too long" -> in-process */
        memcpy(sa->sun_path + used, piece, len);
        used += len;
    }
    sa->sun_path[used] = '\0';
}

static int connect_server(const char *ino) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    socket_path(&sa, ino);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fallback();
    struct timeval tv = {TIMEOUT_S, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fallback(); /* no server, stale socket file, refused, ... (fd closes on exec) */
    return fd;
}

/* "CNI2\n" + KEY=VALUE\0 ... + CALICO_PLUGIN + CALICO_NETNS_INO + "\0" (stdin follows). */
static char *request_head(const char *ino, size_t *len) {
    static const char magic[] = "CNI2\n";
    size_t n = sizeof magic - 1;
    char **e;
    for (e = environ; *e; e++)
        n += strlen(*e) + 1;
    n += strlen("CALICO_PLUGIN=") + strlen(g_plugin) + 1;
    n += strlen("CALICO_NETNS_INO=") + strlen(ino) + 1 + 1;
    char *buf = malloc(n), *p = buf;
    if (buf == NULL)
        fallback();
    memcpy(p, magic, sizeof magic - 1);
    p += sizeof magic - 1;
    for (e = environ; *e; e++) {
        if (strchr(*e, '=') == NULL || strncmp(*e, "CALICO_PLUGIN=", 14) == 0 ||
            strncmp(*e, "CALICO_NETNS_INO=", 17) == 0)
            continue; /* as posix.environ skips them; ours replace the caller's */
        size_t l = strlen(*e) + 1;
        memcpy(p, *e, l);
        p += l;
    }
    p += sprintf(p, "CALICO_PLUGIN=%s", g_plugin) + 1;
    p += sprintf(p, "CALICO_NETNS_INO=%s", ino) + 1;
    *p++ = '\0';
    *len = (size_t)(p - buf);
    return buf;
}

static char *read_reply(int fd, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        fallback();
    for (;;) {
        if (n == cap) {
            cap = cap * 2 > MAX_REPLY + 1 ? MAX_REPLY + 1 : cap * 2;
            char *bigger = realloc(buf, cap);
            if (bigger == NULL)
                fallback();
            buf = bigger;
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fallback(); /* includes the SO_RCVTIMEO timeout */
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > MAX_REPLY)
            fallback(); /* too big to be ours */
    }
    *len = n;
    return buf;
}

/* A run of 1..9 ASCII digits (Python's bytes.isdigit(), bounded); -1 otherwise. */
static long number(const char *p, size_t n) {
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int main(int argc, char **argv) {
    (void)argc;
    g_argv = argv;
    g_plugin = plugin_name(argv[0]);

    struct stat st;
    char ino[32];
    if (stat("/proc/self/ns/net", &st) != 0)
        fallback();
    int n = snprintf(ino, sizeof ino, "%llu", (unsigned long long)st.st_ino);
    if (n < 0 || (size_t)n >= sizeof ino)
        fallback();

    read_stdin(); /* first, as fastpath does: an oversized config never opens a connection */
    int fd = connect_server(ino);
    size_t head_len, reply_len;
    char *head = request_head(ino, &head_len);
    if (send_with_root(fd, head, head_len) != 0 || send_all(fd, in_buf, in_len) != 0 ||
        shutdown(fd, SHUT_WR) != 0)
        fallback();
    char *reply = read_reply(fd, &reply_len);
    if (close(fd) != 0)
        fallback();

    const char *end = reply + reply_len;
    const char *nl1 = memchr(reply, '\n', reply_len);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (nl2 == NULL)
        fallback(); /* "FALLBACK\n", or cut short */
    long rc = number(reply, (size_t)(nl1 - reply));
    long size = number(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    const char *out = nl2 + 1;
    if (rc < 0 || size < 0 || (size_t)(end - out) < (size_t)size)
        fallback();

    /* The call is done: from here on, never fall back (it would run the call twice). */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        die("signal", errno);
    if (write_all(1, out, (size_t)size) != 0 ||
        write_all(2, out + size, (size_t)(end - out - size)) != 0)
        die("cannot write the result", errno);
    return (int)(rc & 0xff);
}
